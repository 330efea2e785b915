"""``alexnet experiment imagenette-128``: the workhorse's quick path on a tiny generated store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alexnet.data.shards import write_store
from alexnet.errors import UserError
from alexnet.experiments import parameters, record, run_experiment
from helpers import quadrant_images


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("i128") / "imagenette-146"
    write_store(path, {"train": quadrant_images(96, 24, 4, rng), "holdout": quadrant_images(16, 24, 4, rng),
                       "val": quadrant_images(24, 24, 4, rng)}, [(f"n{i:08d}", f"c{i}") for i in range(4)])
    return path


def test_quick_workhorse_two_seeds_record_and_ensembles(tmp_path: Path, store: Path, capsys) -> None:
    out = tmp_path / "run"
    doc = run_experiment("imagenette-128", budget="quick", out=out, seeds=2, stores={"imagenette-146": store},
                         params=["train_images=0", "val_images=0", "batch_size=16"], cache=tmp_path / "cache",
                         threads=1)
    rec = record.load(out / "record.json")
    assert set(rec["arms"]) == {"workhorse", "ensemble-1", "ensemble-2"}
    seeds = rec["arms"]["workhorse"]["per_seed"]
    assert set(seeds) == {"0", "1"}
    for values in seeds.values():
        assert values["checkpoint"] == "best.pt"  # decided on the holdout
        assert 0 <= values["ten_top1_error"] <= 1 and values["ten_top1_accuracy"] == 1 - values["ten_top1_error"]
        assert "colour_energy_column1" in values and "colour_energy_column2" in values
    # one net "averaged" is that net's own ten-patch error
    assert rec["arms"]["ensemble-1"]["per_seed"]["0"]["ten_top1_error"] == pytest.approx(seeds["0"]["ten_top1_error"])
    assert record.render(rec) in doc["table"]
    events = [json.loads(line) for line in (out / "runs" / "workhorse-seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [e["split"] for e in events if e.get("event") == "decision_split"] == ["holdout"]


def test_an_ablation_arm_alone_records_no_workhorse_goal(tmp_path: Path, store: Path) -> None:
    """An arm run without the workhorse (to be merged with it later) says nothing of the workhorse's goal."""
    out = tmp_path / "arm"
    run_experiment("imagenette-128", budget="quick", out=out, seeds=1, stores={"imagenette-146": store},
                   params=["train_images=0", "val_images=0", "batch_size=16", "arms=one-column"],
                   cache=tmp_path / "cache", threads=1)
    rec = record.load(out / "record.json")
    assert set(rec["arms"]) == {"one-column"} and rec["verdicts"] == []
    assert len(rec["notes"]) == 1 and rec["notes"][0].startswith("Budget `quick`")


def test_unknown_arm_is_one_line(tmp_path: Path, store: Path) -> None:
    with pytest.raises(UserError, match="unknown arm 'deeper'"):
        run_experiment("imagenette-128", budget="quick", out=tmp_path / "x", stores={"imagenette-146": store},
                       params=["arms=workhorse,deeper"], cache=tmp_path / "cache", threads=1)
    assert parameters("imagenette-128", "full")["holdout"] == 50
