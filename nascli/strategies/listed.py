"""Listed architectures: evaluate exactly those of a file, in its order (benchmarking proxies, re-scoring)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from nascli.errors import UserError
from nascli.registry import register
from nascli.spaces.base import Arch, SearchSpace
from nascli.strategies.base import Outcome, Proposal, Strategy


@dataclass
class ListSettings:
    """The file: one architecture per line, a JSON object (or {"arch": ...}) or a table's `arch` string."""

    path: Optional[str] = None  # the file of architectures, one per line (blank and # lines are skipped); required


def _path(settings: ListSettings) -> Path:
    if settings.path is None:
        raise UserError("strategy=list needs strategy.path=FILE: one architecture per line")
    path = Path(settings.path).expanduser()
    if not path.is_file():
        raise UserError(f"strategy.path {settings.path} is not a file")
    return path


def read_architectures(path: Path, space: SearchSpace) -> list[Arch]:
    """The architectures of a list file, each checked against the space; a bad line is a one-line error."""
    archs = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            arch = json.loads(line) if line.startswith("{") else space.from_key(line)
            if isinstance(arch, dict) and set(arch) == {"arch"}:
                arch = arch["arch"]
            archs.append(space.validate(arch))
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{path} line {number}: not an architecture of this space ({exc})") from None
    if not archs:
        raise UserError(f"{path} lists no architecture")
    return archs


@register("strategy", "list")
class ListedArchitectures(Strategy):
    """Proposes the file's architectures in order (each once), then stops."""

    Settings = ListSettings

    def __init__(self, settings: ListSettings, space: SearchSpace, seed: int) -> None:
        super().__init__(settings, space, seed)
        self.archs = read_architectures(_path(settings), space)
        self.position = 0

    @classmethod
    def check(cls, settings: ListSettings) -> None:
        _path(settings)

    def ask(self) -> Optional[Proposal]:
        while self.position < len(self.archs):
            arch = self.archs[self.position]
            self.position += 1
            if self._claim(arch):
                return Proposal(arch)
        return None

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """The list does not depend on outcomes."""

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.position = state["position"]
