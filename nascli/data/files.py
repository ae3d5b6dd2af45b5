"""Datasets read from files: found in `dataset.root`, a system folder, or fetched with torchvision."""

from __future__ import annotations

import importlib.util
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from nascli.data.base import ArrayDataset, DatasetSettings
from nascli.errors import UserError, warn

CACHE = Path.home() / ".cache" / "nascli" / "datasets"


@dataclass
class FileDatasetSettings(DatasetSettings):
    """`root`: a folder holding the dataset's files (also where torchvision downloads to)."""

    # folder holding the dataset's files, looked in first; torchvision downloads there (null: ~/.cache/nascli/datasets)
    root: Optional[str] = None


class FileDataset(ArrayDataset):
    """A dataset whose files are looked for in several folders before torchvision downloads them."""

    Settings = FileDatasetSettings
    title: str = ""
    files: tuple[str, ...] = ()
    subdir: str = ""  # where torchvision puts the files under its root
    system_dir: Optional[str] = None
    install_hint: str = ""

    def _root(self) -> Path | None:
        """dataset.root (None when unset); one that does not exist is a UserError, never a reason to look elsewhere."""
        if not self.settings.root:
            return None
        root = Path(self.settings.root).expanduser()
        if not root.exists():
            raise UserError(f"{self.title} not found: dataset.root {root} does not exist; {self.install_hint}")
        return root

    def _download_root(self) -> Path:
        return self._root() or CACHE

    def _candidates(self) -> list[Path]:
        dirs = []
        root = self._root()
        if root is not None:
            dirs += [root, root / self.subdir]
        if self.system_dir:
            dirs.append(Path(self.system_dir))
        return dirs + [CACHE / self.subdir]

    def _find(self) -> Optional[Path]:
        for folder in self._candidates():
            if all((folder / name).exists() or (folder / f"{name}.gz").exists() for name in self.files):
                return folder
        return None

    def _missing_message(self) -> str:
        looked = ", ".join(str(d) for d in self._candidates())
        return f"{self.title} not found (looked in {looked}); {self.install_hint}"

    def alternative(self) -> Optional[Path]:
        """A file or folder under `dataset.root` in another layout that this dataset reads instead (or None)."""
        return None

    def _under_root(self, *names: str) -> list[Path]:
        """`root` itself and root/NAME for each name, when dataset.root is set."""
        root = self._root()
        return [] if root is None else [root, *(root / name for name in names)]

    def check(self) -> None:
        if self.alternative() is None and self._find() is None and importlib.util.find_spec("torchvision") is None:
            raise UserError(self._missing_message())

    @abstractmethod
    def _download(self, root: Path) -> None:
        """Fetch the files into `root` with torchvision."""

    def locate(self) -> Path:
        """The folder holding the files, downloading them with torchvision if needed."""
        found, given = self._find(), self._root()
        if found is not None:
            if given is not None and found not in (given, given / self.subdir):
                warn(f"dataset.root {given} holds no {self.title} files ({', '.join(self.files)}); reading {found}")
            return found
        try:
            root = self._download_root()
            self._download(root)
        except Exception as exc:  # no torchvision, or no network
            raise UserError(f"{self._missing_message()} (download failed: {str(exc).splitlines()[0]})") from None
        found = self._find()
        if found is None:
            raise UserError(self._missing_message())
        return found
