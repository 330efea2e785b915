"""``alexnet experiment inits``: steps to leave chance per initialisation, on a tiny generated store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alexnet.data.shards import write_store
from alexnet.experiments import record, run_experiment
from alexnet.experiments.inits import left_chance
from helpers import quadrant_images


def test_left_chance_is_the_first_logged_step_under_nine_tenths_of_ln_c() -> None:
    # ln 4 = 1.3863; 0.9 of it = 1.2477
    history = [{"kind": "event"}, {"kind": "step", "step": 10, "loss": 1.30}, {"kind": "step", "step": 20, "loss": 1.25},
               {"kind": "step", "step": 30, "loss": 1.24}, {"kind": "step", "step": 40, "loss": 1.0}]
    assert left_chance(history, 4) == (30, 1.24)
    assert left_chance(history[:3], 4) == (None, None)


def test_quick_inits_writes_a_record_per_init(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = tmp_path / "cifar10-32"
    write_store(store, {"train": quadrant_images(64, 32, 4, rng), "holdout": quadrant_images(8, 32, 4, rng),
                        "test": quadrant_images(8, 32, 4, rng)}, [(f"n{i:08d}", f"c{i}") for i in range(4)])
    run_experiment("inits", budget="quick", out=tmp_path / "out", stores={"cifar10-32": store},
                   cache=tmp_path / "cache", threads=1)
    rec = record.load(tmp_path / "out" / "record.json")
    assert set(rec["arms"]) == {"cifar10/paper", "cifar10/he-scaled"}
    for arm in rec["arms"].values():
        values = arm["per_seed"]["0"]
        assert values["cap"] == 12 and values["loss_at_init"] > 0 and 0 <= values["logits_signal_at_init"] <= 1
    paper = rec["arms"]["cifar10/paper"]["per_seed"]["0"]["logits_signal_at_init"]
    scaled = rec["arms"]["cifar10/he-scaled"]["per_seed"]["0"]["logits_signal_at_init"]
    assert scaled > paper  # the paper's 0.01 in a narrow net loses the image before the logits
    assert "| cifar10, paper |" in record.render(rec)
    with pytest.raises(Exception, match="unknown 'xavier'"):
        run_experiment("inits", budget="quick", out=tmp_path / "x", params=["inits=xavier"],
                       stores={"cifar10-32": store}, cache=tmp_path / "cache", threads=1)
