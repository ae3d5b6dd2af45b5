"""The run directory's files: the trial log survives a torn write; JSON files are written whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nascli.errors import UserError
from nascli.store import read_trials, write_json


def test_half_written_last_trial_is_dropped_with_a_warning(tmp_path: Path) -> None:
    log = tmp_path / "trials.jsonl"
    log.write_text(json.dumps({"id": 0}) + "\n" + json.dumps({"id": 1}) + "\n" + '{"id": 2, "ar')
    with pytest.warns(UserWarning, match="half-written"):
        assert read_trials(log) == [{"id": 0}, {"id": 1}]


def test_corrupt_trial_in_the_middle_is_an_error(tmp_path: Path) -> None:
    log = tmp_path / "trials.jsonl"
    log.write_text('{"id": 0}\nnot json\n{"id": 2}\n')
    with pytest.raises(UserError, match="line 2"):
        read_trials(log)


def test_write_json_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"status": "running"})
    write_json(path, {"status": "completed"})
    assert json.loads(path.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
