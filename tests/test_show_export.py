"""`nas show` and `nas export`: a run in detail, and the retrained model out as TorchScript or ONNX."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import TINY

from nascli.spaces.stored import load_model


def test_show_prints_outcome_config_architecture_trials_retraining_and_files(nas, run: Path) -> None:
    code, out, err = nas("show", str(run), "--top", "2")
    assert code == 0, err
    for part in ("status", "completed", "config", "name: chain", "best architecture",
                 '"blocks"', "top 2 of 3 trials by val_acc", "retraining", "test_top5", "files", "retrain/model.pt",
                 "trials.jsonl"):
        assert part in out, part


def test_search_ends_with_the_paths_that_matter(nas, workdir: Path) -> None:
    code, out, _ = nas("search", *TINY, "run_dir=run")
    assert code == 0
    assert "3 trials (0 failed)" in out and "run/retrain/model.pt" in out and "nas export" in out


def _round_trip(nas, run: Path, fmt: str, out: Path) -> torch.Tensor:
    code, stdout, err = nas("export", str(run), "--format", fmt, "--out", str(out))
    assert code == 0, err
    assert out.exists() and "match the checkpoint" in stdout
    model, checkpoint = load_model(run)
    x = torch.randn(5, *checkpoint["input_shape"])  # another batch size than the export's sample
    with torch.no_grad():
        return x, model(x)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export_reproduces_the_checkpoint(nas, run: Path, workdir: Path) -> None:
    x, expected = _round_trip(nas, run, "torchscript", workdir / "model.ts")
    loaded = torch.jit.load(str(workdir / "model.ts"))
    torch.testing.assert_close(loaded(x), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="pip install 'nascli[onnx]'")
def test_onnx_export_reproduces_the_checkpoint(nas, run: Path, workdir: Path) -> None:
    import onnxruntime

    x, expected = _round_trip(nas, run, "onnx", workdir / "model.onnx")
    session = onnxruntime.InferenceSession(str(workdir / "model.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-3)


def test_export_defaults_to_the_run_directory(nas, run: Path) -> None:
    assert nas("export", str(run))[0] == 0
    assert (run / "export" / "model.ts").exists()


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (lambda run: (run / "retrain" / "model.pt").unlink(), [], "no retrained model"),
        (lambda run: (run / "retrain" / "model.pt").write_bytes(b"not a checkpoint"), [], "corrupt"),
        (lambda run: None, ["--format", "keras"], "unknown export format"),
    ],
    ids=["no-model", "corrupt-model", "bad-format"],
)
def test_export_errors_are_one_line(nas, run: Path, setup, args: list[str], message: str) -> None:
    setup(run)
    code, _, err = nas("export", str(run), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
