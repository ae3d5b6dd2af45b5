"""Hydra's own entry point for `nas search`, so that multirun, sweepers and launchers all work."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from nascli.config import config_dir, validate
from nascli.errors import UserError, exit_with
from nascli.runner import search


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def search_task(cfg: DictConfig) -> Optional[float]:
    """One search job: Hydra composed `cfg` and chose its output folder (run_dir, or a sweep job's folder)."""
    hydra_cfg = HydraConfig.get()
    job_index = hydra_cfg.job.num if hydra_cfg.mode == RunMode.MULTIRUN else None
    try:
        summary = search(validate(cfg), Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task), job_index)
    except UserError as exc:
        exit_with(exc)  # SystemExit passes through Hydra's job wrapper; an exception would get a traceback
    return summary["best"][summary["objective"]] if summary["best"] else None
