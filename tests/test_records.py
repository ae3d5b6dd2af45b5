"""Each run-directory file's shape is its record's dataclass: written from it, read back into it, checked by type."""

from __future__ import annotations

import json

import pytest

from nascli.errors import UserError
from nascli.records import (ArchitectureWeights, Best, Confirmation, Front, ModelHeader, PendingTrial, State, Summary,
                            Trial, WarmStartRecord)

TRIAL = Trial(3, {"blocks": []}, "abc", "ok", {"val_acc": 90.0, "params": 1000}, budget=None, seed=7, elapsed=1.5)
RECORDS = [
    TRIAL,
    Summary(kind="search", status="completed", best={"id": 3}, baselines={"late_fusion": None}),
    Best({"blocks": []}, "abc", "chain", Confirmation(3, 88.0, [88.0, 87.0, 89.0]), chosen=TRIAL),
    Best({"blocks": []}, "abc", "chain", source="runs/a", trial=3),
    Front(["val_acc:max", "params:min"], [TRIAL], {"params": 1e5}, "knee", {"value": 0.5}),
    State(4, 12.0, [PendingTrial(3, {"blocks": []}, 1.0, 1, None)], {"rng": [3]}, None),
    ModelHeader({"cell": "x"}, [3, 32, 32], 10, "nb201"),
    ArchitectureWeights(["conv", "skip"], [[[0.5, 0.5]]]),
    WarmStartRecord(["a", "(this search)"], [[0.5, 0.5]], [{"name": "a", "runs": ["r"], "architectures": 3}]),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_record_reads_back_what_it_wrote(record) -> None:
    assert type(record).from_dict(json.loads(json.dumps(record.to_dict())), "file") == record


def test_a_search_s_best_is_its_trial_at_the_top_level() -> None:
    written = RECORDS[2].to_dict()
    assert written["id"] == 3 and written["metrics"] == TRIAL.metrics and written["space"] == "chain"
    assert "chosen" not in written and Best.from_dict(written, "best.json").metrics == TRIAL.metrics
    assert Best.from_dict(RECORDS[3].to_dict(), "best.json").metrics == {}  # a retraining's names no trial


@pytest.mark.parametrize("record, key, value, where", [
    (TRIAL, "id", "3", "trials.jsonl line 1 has no valid 'id'"),
    (TRIAL, "feasible", 1, "trials.jsonl line 1 has no valid 'feasible'"),  # a number is no bool
    (State(4, 12.0, [], {}), "elapsed", "soon", "state.json has no valid 'elapsed'"),
    (State(4, 12.0, [PendingTrial(3, {})], {}), "pending", [{"id": "3", "arch": {}}],
     "state.json 'pending' has no valid 'id'"),
    (RECORDS[2], "confirmed", {"runs": "three", "mean": 1, "values": []}, "best.json 'confirmed' has no valid 'runs'"),
    (Summary(kind="search"), "status", None, "summary.json has no valid 'status'"),
])
def test_a_tampered_field_is_a_one_line_error_naming_it(record, key, value, where) -> None:
    data = {**record.to_dict(), key: value}
    with pytest.raises(UserError, match=f"^{where}; the file is corrupt$"):
        type(record).from_dict(data, where.split(" has")[0].split(" '")[0])


def test_a_file_that_is_no_object_is_said_to_be_corrupt() -> None:
    with pytest.raises(UserError, match=r"^front.json is not a JSON object \(found list\); the file is corrupt$"):
        Front.from_dict([], "front.json")
