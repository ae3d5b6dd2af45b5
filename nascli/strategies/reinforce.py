"""An RNN controller trained with REINFORCE and a moving-average baseline (Zoph & Le, 2017)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from nascli.errors import require
from nascli.registry import register
from nascli.strategies.base import Outcome, Proposal, Strategy, StrategySettings


@dataclass
class ReinforceSettings(StrategySettings):
    """Controller size and learning rate, baseline decay and entropy bonus."""

    hidden: int = 32  # hidden size of the controller's LSTM cell and of its choice embeddings
    lr: float = 0.02  # Adam learning rate of the controller
    # decay of the reward baseline's moving average (baseline = decay * baseline + (1 - decay) * reward), in [0, 1)
    baseline_decay: float = 0.9
    # weight of the entropy bonus in the controller's loss: larger keeps its choices more varied (>= 0)
    entropy_weight: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.hidden >= 1, "hidden must be at least 1")
        require(self.lr > 0, "lr must be positive")
        require(0 <= self.baseline_decay < 1, "baseline_decay must be in [0, 1)")
        require(self.entropy_weight >= 0, "entropy_weight must be >= 0")


class Controller(nn.Module):
    """An LSTM that emits the space's decisions one after the other, each fed the previous choice."""

    def __init__(self, decisions: list[int], hidden: int) -> None:
        super().__init__()
        self.decisions = decisions
        self.embed = nn.Embedding(sum(decisions) + 1, hidden)  # every choice of every decision, plus a start token
        self.offsets = [1 + sum(decisions[:i]) for i in range(len(decisions))]
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in decisions)

    def forward(
        self, generator: torch.Generator, batch: int = 1, forced: Optional[list[int]] = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Choices (batch, decisions), sampled or `forced`, with their log-probabilities and entropies (batch,)."""
        if forced is not None:
            batch = 1
        token = torch.zeros(batch, dtype=torch.long)
        state = None
        choices, log_prob, entropy = [], torch.zeros(batch), torch.zeros(batch)
        for i, head in enumerate(self.heads):
            state = self.cell(self.embed(token), state)
            dist = torch.distributions.Categorical(logits=head(state[0]))
            if forced is not None:
                choice = torch.tensor([forced[i]])
            else:
                choice = torch.multinomial(dist.probs, 1, generator=generator)[:, 0]
            log_prob = log_prob + dist.log_prob(choice)
            entropy = entropy + dist.entropy()
            choices.append(choice)
            token = self.offsets[i] + choice
        return torch.stack(choices, dim=1), log_prob, entropy


def _pack(obj: Any) -> str:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def _unpack(text: str) -> Any:
    return torch.load(io.BytesIO(base64.b64decode(text)), weights_only=True)


@register("strategy", "reinforce")
class Reinforce(Strategy):
    """Samples decisions from the controller; each outcome is one policy-gradient step."""

    Settings = ReinforceSettings
    sample_batch = 16  # samples drawn at once; the first unseen one is proposed

    def __init__(self, settings: ReinforceSettings, space: Any, seed: int) -> None:
        super().__init__(settings, space, seed)
        torch_seed = self.rng.getrandbits(62)
        with torch.random.fork_rng():
            torch.manual_seed(torch_seed)
            self.controller = Controller(space.decisions(), settings.hidden)
        self.generator = torch.Generator().manual_seed(torch_seed)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=settings.lr)
        self.baseline: Optional[float] = None
        self.pending: dict[str, list[int]] = {}  # hash -> decisions of proposals awaiting their outcome

    def ask(self) -> Optional[Proposal]:
        suggested = self._suggested()  # a warm start's suggestions come first; the controller learns from its own
        if suggested is not None:
            return Proposal(suggested)
        for _ in range(self.max_attempts // self.sample_batch):
            with torch.no_grad():
                batch, _, _ = self.controller(self.generator, batch=self.sample_batch)
            for choices in batch.tolist():
                arch = self.space.from_decisions(choices)
                if self._claim(arch):
                    self.pending[self.space.hash(arch)] = choices
                    return Proposal(arch)
        return self._propose_random()  # the policy has collapsed onto architectures already seen

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        choices = self.pending.pop(self.space.hash(proposal.arch), None)
        if not outcome.ok or choices is None:
            return
        reward = outcome.objective
        if self.baseline is None:
            self.baseline = reward
        _, log_prob, entropy = self.controller(self.generator, forced=choices)
        loss = (-(reward - self.baseline) * log_prob - self.settings.entropy_weight * entropy).sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        decay = self.settings.baseline_decay
        self.baseline = decay * self.baseline + (1 - decay) * reward

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "torch": _pack({"controller": self.controller.state_dict(), "optimizer": self.optimizer.state_dict(),
                            "generator": self.generator.get_state()}),
            "baseline": self.baseline,
            "pending": self.pending,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        packed = _unpack(state["torch"])
        self.controller.load_state_dict(packed["controller"])
        self.optimizer.load_state_dict(packed["optimizer"])
        self.generator.set_state(packed["generator"])
        self.baseline, self.pending = state["baseline"], state["pending"]
