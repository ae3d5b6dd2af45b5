"""Structured channel pruning of a chain-space network to a FLOPs target, then fine-tuning: a smaller dense network.

The pruned network is itself a chain architecture, with narrower blocks, so it is saved and loaded as data like
any other (rebuilt by its space, never unpickled). Channels that identity shortcuts add together form one group
and are kept or dropped together; each channel is ranked by the batch-norm scales (|gamma|) of the layers that
write it (network slimming, Liu et al. 2017). Every group but the stem's keeps the same share of its channels,
the share found by bisection so that the network's FLOPs fall to the target.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from nascli.config import RunConfig, validate
from nascli.errors import UserError
from nascli.evaluators.fitting import Start
from nascli.evaluators.metrics import evaluate_model
from nascli.evaluators.profile import count_flops
from nascli.factory import build_space, load_data
from nascli.hardware import resolve_hardware
from nascli.records import Best, ModelHeader, Summary
from nascli.rundir import MODEL, RunDir
from nascli.runner import retraining, run_record, start_run, summary_written
from nascli.spaces.base import Arch
from nascli.spaces.chain import ChainSpace
from nascli.spaces.stored import load_model

STEM = 0  # the stem's group: never pruned (its width is a space setting, not part of the architecture)
HEAD = 3  # modules of a built chain after its blocks: pooling, flatten, batch norm, linear


@dataclass
class Layout:
    """The channel group of each block's input and output, and the order of the built network's modules."""

    inputs: list[int]
    outputs: list[int]
    sizes: dict[int, int]  # channels of each group
    strides: list[int]


def layout(space: ChainSpace, arch: Arch, input_shape: tuple[int, ...]) -> Layout:
    """The channel groups of `arch`: a block whose shape is kept (no projection) adds into its input's group."""
    size, group, groups = min(input_shape[1:]), STEM, {STEM: space.s.stem_width}
    inputs, outputs, strides = [], [], []
    for block in arch["blocks"]:
        stride = 2 if block["down"] and size >= 2 else 1
        size = (size + stride - 1) // stride
        inputs.append(group)
        if stride > 1 or groups[group] != block["width"]:
            group = len(groups)
            groups[group] = block["width"]
        outputs.append(group)
        strides.append(stride)
    return Layout(inputs, outputs, groups, strides)


def _roles(model: nn.Sequential, plan: Layout) -> dict[str, tuple[Optional[int], Optional[int]]]:
    """For each module with weights: the groups its output and input channels index (None: not pruned)."""
    roles: dict[str, tuple[Optional[int], Optional[int]]] = {"0": (STEM, None), "1": (STEM, None)}
    for i, (g_in, g_out) in enumerate(zip(plan.inputs, plan.outputs)):
        block = model[3 + i]
        for j, layer in enumerate(block.body):
            depthwise = isinstance(layer, nn.Conv2d) and layer.groups > 1
            first_of_sepconv = len(block.body) == 6 and j < 3  # the depthwise conv and its batch norm keep c_in
            if depthwise:
                roles[f"{3 + i}.body.{j}"] = (g_in, None)
            elif isinstance(layer, (nn.Conv2d, nn.BatchNorm2d)):
                roles[f"{3 + i}.body.{j}"] = (g_in if first_of_sepconv else g_out, g_in)
        if isinstance(block.project, nn.Sequential):  # a projection: 1x1 convolution and batch norm
            roles[f"{3 + i}.project.0"] = (g_out, g_in)
            roles[f"{3 + i}.project.1"] = (g_out, None)
    last = plan.outputs[-1] if plan.outputs else STEM
    end = 3 + len(plan.outputs)
    roles[str(end + 2)] = (last, None)  # the head's batch norm
    roles[str(end + 3)] = (None, last)  # the classifier
    return roles


def importance(model: nn.Sequential, plan: Layout) -> dict[int, Tensor]:
    """Each group's channels ranked: the summed |gamma| of every batch norm that writes them."""
    scores = {group: torch.zeros(size) for group, size in plan.sizes.items()}
    for name, (out_group, _) in _roles(model, plan).items():
        module = model.get_submodule(name)
        if isinstance(module, nn.BatchNorm2d) and out_group is not None:
            scores[out_group] += module.weight.detach().abs().cpu()
    return scores


def pruned_arch(arch: Arch, plan: Layout, share: float) -> tuple[Arch, dict[int, int]]:
    """`arch` with every group but the stem's cut to `share` of its channels (at least one), and the kept counts."""
    kept = {g: n if g == STEM else max(1, round(share * n)) for g, n in plan.sizes.items()}
    for g_in, g_out, stride in zip(plan.inputs, plan.outputs, plan.strides):
        # a projected block must stay projected: its two groups may not end the same width at stride 1
        if g_in != g_out and stride == 1 and kept[g_in] == kept[g_out]:
            kept[g_out] += 1 if kept[g_out] < plan.sizes[g_out] else -1
    blocks = [{**block, "width": kept[group]} for block, group in zip(arch["blocks"], plan.outputs)]
    return {"blocks": blocks}, kept


def sliced(state: dict[str, Tensor], roles: dict[str, tuple[Optional[int], Optional[int]]],
           keep: dict[int, Tensor]) -> dict[str, Tensor]:
    """The state dict cut to the kept channels of each group, along the dimensions each module's groups index."""
    out = {}
    for name, tensor in state.items():
        module, _, _ = name.rpartition(".")
        out_group, in_group = roles.get(module, (None, None))
        if tensor.dim() >= 1 and out_group is not None:
            tensor = tensor.index_select(0, keep[out_group])
        if tensor.dim() >= 2 and in_group is not None and tensor.shape[1] > 1:
            tensor = tensor.index_select(1, keep[in_group])
        out[name] = tensor.contiguous()
    return out


def prune(run_dir: Path, flops_share: float, epochs: int, out: Path, lr_share: float = 1.0) -> Summary:
    """Prune the run's retrained chain network to `flops_share` of its FLOPs, fine-tune it for `epochs` (its
    one-cycle schedule peaking at `lr_share` of the retraining's learning rate) into the new run directory `out`."""
    if not 0 < flops_share < 1:
        raise UserError(f"--flops must be a share of the network's FLOPs between 0 and 1, got {flops_share}")
    if epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    if not 0 < lr_share <= 10:
        raise UserError(f"--lr-share must be a positive share of retrain.lr (at most 10), got {lr_share}")
    source = RunDir(run_dir)
    cfg = validate(source.config())
    if cfg.space.name != "chain":
        raise UserError(f"nas prune takes a run of the chain space; {run_dir} is of space={cfg.space.name}")
    RunDir(out).ensure_free()
    model, checkpoint = load_model(run_dir)
    header = ModelHeader.from_dict(checkpoint, str(source.file(MODEL)))
    shape = tuple(header.input_shape)
    plan = layout(build_space(cfg), header.arch, shape)
    full = count_flops(model, shape, "cpu")

    def flops(share: float) -> int:
        arch, _ = pruned_arch(header.arch, plan, share)
        return count_flops(build_space(_widened(cfg, arch)).build(arch, shape, header.num_classes), shape, "cpu")

    low, high = 0.0, 1.0  # bisection of the kept share: the largest whose FLOPs meet the target
    for _ in range(12):
        middle = (low + high) / 2
        low, high = (middle, high) if flops(middle) <= flops_share * full else (low, middle)
    arch, kept = pruned_arch(header.arch, plan, low)
    ranked = importance(model, plan)
    keep = {g: ranked[g].argsort(descending=True)[:n].sort().values for g, n in kept.items()}
    weights = sliced(model.state_dict(), _roles(model, plan), keep)
    settings = dataclasses.replace(cfg.retrain, epochs=epochs, lr=cfg.retrain.lr * lr_share, max_seconds=None,
                                   init=None)
    pruned = dataclasses.replace(_widened(cfg, arch), retrain=settings).at(out)
    return _fine_tuned(source, pruned, arch, weights, full)


def _widened(cfg: RunConfig, arch: Arch) -> RunConfig:
    """The run's config with its chain space's widths extended by `arch`'s (the stored config says so too)."""
    widths = sorted({*cfg.space.settings.widths, *(block["width"] for block in arch["blocks"])})
    raw = cfg.raw.copy()
    raw.space.widths = widths
    space = dataclasses.replace(cfg.space, settings=dataclasses.replace(cfg.space.settings, widths=widths))
    return dataclasses.replace(cfg, space=space, raw=raw)


def _fine_tuned(source: RunDir, cfg: RunConfig, arch: Arch, weights: dict[str, Tensor], full: int) -> Summary:
    """Fine-tune the pruned network as a retraining starting from `weights` (its classifier too) into the new run
    directory of `cfg`, noting where it came from."""
    hardware = resolve_hardware(cfg.hardware)
    data = load_data(cfg, hardware)
    space = build_space(cfg)
    model = space.build(arch, data.input_shape, data.num_classes)
    model.load_state_dict(weights)
    cut = evaluate_model(hardware.place(model), data.test_x, data.test_y, hardware, "test")["test_acc"]
    start = Start(str(source.path), lambda _: weights, keep_head=True)
    run = start_run(cfg, run_record("prune", [], hardware, source=str(source.path)), data)
    run.write_best(Best(arch, space.hash(arch), cfg.space.name, source=str(source.path)))
    summary = Summary(kind="retrain", source=str(source.path), dataset=cfg.dataset.name, space=cfg.space.name,
                      seed=cfg.seed)
    noted = {"pruned": {"source": str(source.path), "source_flops": full,
                        "source_test_acc": (source.retrain_metrics() or {}).get("test_acc"),
                        "test_acc_before_finetune": cut, "finetune_epochs": cfg.retrain.epochs,
                        "finetune_lr": cfg.retrain.lr}}
    with summary_written(run, summary, cfg.logger):
        retraining(cfg, space, data, hardware, start).into(run, summary, arch, noted, label="fine-tune")
    return summary
