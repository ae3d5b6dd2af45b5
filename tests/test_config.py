"""Configs: every option composes and validates; conf/ ships inside a non-editable install."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nascli.config import GROUPS, default_options, group_options, load_config, merge_overrides
from nascli.registry import OPTIONAL_GROUPS


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_validates(group: str, tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_text("arch,val_acc,test_acc\n")
    required = {"tabular": [f"evaluator.table={tmp_path / 'table.csv'}"], "arrays": ["dataset.path=data.npz"],
                "head": ["space.backbone=a_run"]}
    options = group_options(group)
    assert default_options()[group] in options or group in OPTIONAL_GROUPS  # an optional group's default: none
    for option, description in options.items():
        assert description, f"conf/{group}/{option}.yaml needs a first-line comment for `nas list`"
        cfg = load_config([f"{group}={option}", *required.get(option, [])])
        if group != "hardware":
            component = getattr(cfg, group)
            # an option is a registered component, or a variant of one named <component>_<variant>
            assert component.name == option or option.startswith(component.name + "_")
            assert isinstance(component.settings, component.cls.Settings)


def test_merge_overrides_replaces_same_keys() -> None:
    merged = merge_overrides(["dataset=digits", "seed=1", "retrain.epochs=3"], ["retrain.epochs=9", "dataset=mnist"])
    assert merged == ["seed=1", "retrain.epochs=9", "dataset=mnist"]


def test_conf_ships_in_a_non_editable_install(tmp_path: Path) -> None:
    root = Path(__file__).parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("nascli-*.whl")
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    site = tmp_path / "site"
    assert (site / "nascli" / "conf" / "config.yaml").exists()
    assert (site / "nascli" / "conf" / "hydra" / "launcher" / "slurm.yaml").exists()
    packages = {p.parent.relative_to(root) for p in (root / "nascli").rglob("__init__.py")}
    assert packages <= {p.parent.relative_to(site) for p in (site / "nascli").rglob("__init__.py")}
    code = (
        "from nascli.config import config_dir, load_config; "
        "print(config_dir()); print(load_config(['strategy=random']).strategy.name)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "site" / "nascli" / "conf"), "random"]
