"""The import graph stays top-down: pyproject.toml's import-linter contracts hold, and a back-import breaks them."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRY_LAYER = {"nascli/cli.py"}  # defers its imports so that `nas --help` starts fast
# optional extras (or slow to import where only drawing needs them): imported where they are used
OPTIONAL = {"torchvision", "librosa", "ray", "onnx", "onnxruntime", "optuna", "submitit", "matplotlib", "mlflow",
            "wandb", "torch.utils.tensorboard"}
MAX_LINES = 420


def lint(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the package and pyproject.toml under `root`."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_hold() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_every_module_has_a_layer() -> None:
    """A new top-level module or package must be placed in the layers contract, or it would escape it."""
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    placed = {name.strip() for layer in contract["layers"] for name in layer.replace("|", ":").split(":")}
    modules = {f"nascli.{path.stem}" for path in (ROOT / "nascli").glob("*.py") if path.stem != "__init__"}
    packages = {f"nascli.{path.parent.name}" for path in (ROOT / "nascli").glob("*/__init__.py")}
    assert modules | packages == placed


@pytest.mark.parametrize("module, back_import", [
    ("nascli/errors.py", "import nascli.runner"),  # the bottom layer importing the wiring
    ("nascli/spaces/chain.py", "from nascli.factory import build_space"),  # a component importing the factory
    ("nascli/spaces/fusion_layers.py", "import nascli.spaces.fusion"),  # a cycle inside a package
])
def test_a_back_import_breaks_a_contract(tmp_path: Path, module: str, back_import: str) -> None:
    shutil.copytree(ROOT / "nascli", tmp_path / "nascli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{back_import}  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode == 1 and "BROKEN" in result.stdout, result.stdout + result.stderr


def _imports_in_functions(path: Path) -> list[tuple[int, str]]:
    """The import statements inside functions of a module: (line, the module imported)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found += [(inner.lineno, alias.name) for alias in inner.names]
                elif isinstance(inner, ast.ImportFrom):
                    found.append((inner.lineno, (inner.module or "") if not inner.level else "nascli"))
    return found


def _optional(module: str) -> bool:
    """Whether `module` belongs to an optional extra (a package of OPTIONAL or a module below one)."""
    return any(module == extra or module.startswith(extra + ".") for extra in OPTIONAL)


def test_only_the_entry_layer_defers_imports() -> None:
    """Below the CLI, a module imports nascli's own modules and required packages at its top, never in a function."""
    deferred = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                for path in sorted((ROOT / "nascli").rglob("*.py")) if str(path.relative_to(ROOT)) not in ENTRY_LAYER
                for line, name in _imports_in_functions(path) if not _optional(name)]
    assert not deferred, "\n".join(deferred)


def test_no_module_grows_past_its_one_job() -> None:
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in sorted((ROOT / "nascli").rglob("*.py"))
            if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)


def test_the_cli_starts_without_importing_torch() -> None:
    """`nas --help` stays fast: the entry layer defers everything that imports torch until a command runs."""
    code = "import sys, nascli.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stdout + result.stderr
