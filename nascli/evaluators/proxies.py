"""Zero-cost proxies: scores of an untrained network from one mini-batch, computed as the papers' NAS code does.

- `synflow` (Tanaka et al. 2020; for NAS, Abdelfattah et al. 2021): on a copy whose parameters and buffers are
  replaced by their absolute values, in double precision, with BatchNorm layers passing their input through
  unchanged (the zero-cost-proxies code's `bn=False`) and dropout off (Tanaka's pruning runs in eval mode),
  R is the sum of the outputs for one all-ones sample of the batch's sample shape (both papers' code feed a
  batch of one); the score is the sum over weights of |θ ⊙ ∂R/∂θ|.
- `snip` (Lee et al. 2019): the sum over weights of |θ ⊙ ∂L/∂θ|, L the batch's mean cross-entropy.
- `grad_norm` (Abdelfattah et al. 2021): the sum over layers of the L2 norm of ∂L/∂W.
- `jacov` (Mellor et al. 2021, v1; Abdelfattah's `jacob_cov`): J holds, per sample, the gradient of the summed
  outputs with respect to that sample's input (one backward pass over the batch, as both codes do); with λ
  the eigenvalues of the correlation matrix of J's rows, the score is -Σ(log(λ + 1e-5) + 1/(λ + 1e-5)).
  When a sample's gradient is constant (or the output ignores the input) the correlation is undefined: NaN.
- `params`, `flops`: the network's trainable parameters and FLOPs per sample (nascli.evaluators.profile).

The weights are those of convolution and linear layers (the papers' code counts nn.Conv2d and nn.Linear; here
convolutions of any dimension), not of BatchNorm, embeddings, recurrent layers or attention in-projections.
`snip`, `grad_norm` and `jacov` run the network in training mode, as the papers' code scores a freshly built
network (BatchNorm on batch statistics).

Several inputs (multimodal data): the network takes each; `synflow` feeds an all-ones sample of every input and
`jacov` joins each sample's gradients with respect to all of them.

Token inputs (integer ids, the text space): the network's first nn.Embedding stands in for the input layer.
`synflow` feeds one sequence of id 1 (no padding) and makes the embedding emit ones; `jacov` takes the Jacobian
with respect to the embedding's output.

Every proxy works on a deep copy: the model's weights, buffers, gradients and mode, torch's grad mode, default
dtype and random number generators are left as they were, so a proxy's value does not depend on which others
were computed before it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from nascli.evaluators.profile import count_params, forward_flops
from nascli.evaluators.training import training_loss

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
JACOV_K = 1e-5

Inputs = Tensor | tuple[Tensor, ...]  # a batch for the network: one input, or each of several (multimodal data)
Proxy = Callable[[nn.Module, Inputs, Tensor], float]


def _copy(model: nn.Module) -> nn.Module:
    net = copy.deepcopy(model)
    net.zero_grad(set_to_none=True)
    return net


def _passthrough(x: Tensor) -> Tensor:
    return x


def _parts(inputs: Inputs) -> tuple[Tensor, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def _tokens(inputs: Inputs) -> bool:
    """Whether any input holds token ids."""
    return any(not part.is_floating_point() for part in _parts(inputs))


def _embeddings(net: nn.Module) -> list[nn.Embedding]:
    """The network's embeddings, where token ids become the features synflow and jacov start from."""
    found = [module for module in net.modules() if isinstance(module, nn.Embedding)]
    if not found:
        raise ValueError("synflow and jacov on token ids need the network to have an nn.Embedding")
    return found


def _rng_kept(device: torch.device) -> AbstractContextManager:
    """Restore the random number generators afterwards (dropout draws from them in training mode)."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _total(per_layer: list[Tensor]) -> float:
    return float(torch.stack(per_layer).sum()) if per_layer else 0.0


def _weight_grads(net: nn.Module) -> list[tuple[Tensor, Tensor]]:
    """(weight, gradient) of each convolution and linear layer that got a gradient, in double precision."""
    return [(m.weight.detach().double(), m.weight.grad.double()) for m in net.modules()
            if isinstance(m, WEIGHTED) and m.weight.grad is not None]


def _loss_backward(model: nn.Module, inputs: Inputs, labels: Tensor) -> nn.Module:
    """A copy of `model` holding the gradients of the batch's training loss (see training_loss), computed in training mode."""
    net = _copy(model).train()
    with torch.enable_grad(), _rng_kept(labels.device):
        training_loss(net)(net(*_parts(inputs)), labels).backward()
    return net


def synflow(model: nn.Module, inputs: Inputs, labels: Tensor) -> float:
    """Synaptic flow: Σ|θ ⊙ ∂R/∂θ| over weights, R the summed output of the |θ| network on an all-ones sample."""
    net = _copy(model)
    for module in net.modules():
        if isinstance(module, BATCHNORMS):
            module.forward = _passthrough  # an instance attribute shadows the class's forward
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    net.double().eval()
    if _tokens(inputs):
        for embedding in _embeddings(net):
            embedding.register_forward_hook(lambda module, args, out: torch.ones_like(out))
    ones = [torch.ones((1, *part.shape[1:]), dtype=part.dtype if _tokens(part) else torch.float64, device=part.device)
            for part in _parts(inputs)]
    with torch.enable_grad():
        net(*ones).sum().backward()
    return _total([(w * g).abs().sum() for w, g in _weight_grads(net)])


def snip(model: nn.Module, inputs: Inputs, labels: Tensor) -> float:
    """SNIP saliency summed over the network: Σ|θ ⊙ ∂L/∂θ| over weights, L the batch's cross-entropy."""
    net = _loss_backward(model, inputs, labels)
    return _total([(w * g).abs().sum() for w, g in _weight_grads(net)])


def grad_norm(model: nn.Module, inputs: Inputs, labels: Tensor) -> float:
    """The L2 norm of each layer's weight gradient of the batch's cross-entropy, summed over layers."""
    net = _loss_backward(model, inputs, labels)
    return _total([g.norm() for _, g in _weight_grads(net)])


def jacov(model: nn.Module, inputs: Inputs, labels: Tensor) -> float:
    """Jacobian covariance: -Σ(log(λ + k) + 1/(λ + k)) over the eigenvalues of the input gradients' correlations
    (with several inputs, each sample's gradients with respect to all of them, joined)."""
    net = _copy(model).train()
    leaves: list[Tensor] = []

    def leaf(x: Tensor) -> Tensor:
        leaves.append(x.detach().requires_grad_())
        return leaves[-1]

    with torch.enable_grad(), _rng_kept(labels.device):
        if _tokens(inputs):  # a token input's gradient is its embedding's output's
            for embedding in _embeddings(net):
                embedding.register_forward_hook(lambda module, args, out: leaf(out))
        out = net(*(part if _tokens(part) else leaf(part) for part in _parts(inputs)))
        out.backward(torch.ones_like(out))
    if any(x.grad is None for x in leaves):  # the output does not depend on an input
        return math.nan
    return jacov_score(torch.cat([x.grad.reshape(len(labels), -1) for x in leaves], 1))


def jacov_score(jacobians: Tensor) -> float:
    """-Σ(log(λ + k) + 1/(λ + k)) over the eigenvalues λ of the correlation matrix of the rows (one per sample)."""
    corr = torch.corrcoef(jacobians.detach().double().cpu())
    if not bool(torch.isfinite(corr).all()):
        return math.nan
    eig = torch.linalg.eigvalsh(corr)  # the papers' code uses the general eig; a correlation matrix is symmetric
    return float(-(torch.log(eig + JACOV_K) + 1 / (eig + JACOV_K)).sum())


def params(model: nn.Module, inputs: Inputs, labels: Tensor) -> float:
    """Trainable parameters."""
    return float(count_params(model))


def flops(model: nn.Module, inputs: Inputs, labels: Tensor) -> float:
    """FLOPs of one sample's forward pass."""
    return float(forward_flops(_copy(model).eval(), tuple(part[:1] for part in _parts(inputs))))


PROXIES: dict[str, Proxy] = {"synflow": synflow, "snip": snip, "grad_norm": grad_norm, "jacov": jacov,
                             "params": params, "flops": flops}
DATA_FREE = frozenset({"synflow", "params", "flops"})  # they read only the batch's shape: one batch suffices
