"""``alexnet experiment inits``: steps to leave chance per initialisation, on a tiny generated store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from alexnet.data.shards import write_store
from alexnet.errors import UserError
from alexnet.experiments import record, run_experiment, stores, subruns
from alexnet.experiments.inits import left_chance
from helpers import make_store, quadrant_images


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
    for init in ("paper", "he-scaled"):  # each value is what the sub-run's own files say
        run = tmp_path / "out" / "runs" / f"cifar10-{init}-seed0"
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses = [line["loss"] for line in lines if line.get("kind") == "step"]
        signal = next(line for line in lines if line.get("event") == "signal")
        values = rec["arms"][f"cifar10/{init}"]["per_seed"]["0"]
        assert values["loss_at_cap"] == losses[-1] and values["loss_at_init"] == signal["loss"]
        assert values["logits_std_at_init"] == signal["logits_std"]
        assert values["status"] == json.loads((run / "done.json").read_text())["status"] == "finished"
    assert "| cifar10, paper |" in record.render(rec)
    with pytest.raises(Exception, match="unknown 'xavier'"):
        run_experiment("inits", budget="quick", out=tmp_path / "x", params=["inits=xavier"],
                       stores={"cifar10-32": store}, cache=tmp_path / "cache", threads=1)


def test_left_chance_wants_the_loss_strictly_below_the_threshold() -> None:
    at = 0.9 * math.log(4)  # exactly 0.9 ln 4: not yet below it
    history = [{"kind": "step", "step": 2, "loss": at}, {"kind": "step", "step": 4, "loss": at - 0.01}]
    assert left_chance(history, 4) == (4, at - 0.01)
    assert left_chance(history[:1], 4) == (None, None)


# ---------------------------------------------------------------- run() with hand-made histories

#: sub-run -> (its metrics.jsonl records, its done.json status and reason); 4 classes: 0.9 ln 4 = 1.2477
FAKE = {
    "cifar10-paper-seed0": (
        [{"kind": "event", "event": "start"},
         {"kind": "event", "event": "signal", "loss": 1.39, "logits_std": 0.02, "logits_signal": 0.01},
         {"kind": "step", "step": 100, "loss": 1.40}, {"kind": "step", "step": 1000, "loss": 1.38},
         {"kind": "step", "step": 1500, "loss": 1.36}, {"kind": "eval", "step": 1500, "loss": 1.2}],
        ("finished", "")),
    "cifar10-he-scaled-seed0": (
        [{"kind": "event", "event": "signal", "loss": 1.5, "logits_std": 0.8, "logits_signal": 0.3},
         {"kind": "step", "step": 100, "loss": 1.30}, {"kind": "step", "step": 1100, "loss": 1.20},
         {"kind": "step", "step": 1400, "loss": 1.15}, {"kind": "step", "step": 1500, "loss": 1.10},
         {"kind": "event", "event": "end"}],
        ("failed", "loss stuck at ln 4")),
    "cifar10-fan-in-seed0": ([{"kind": "event", "event": "start"}], ("finished", "")),  # no step, no signal
}
PARAMS = ["max_steps=1500", "log_every=100", "inits=paper,he-scaled,fan-in"]


@pytest.fixture(scope="module")
def faked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The quick budget run once with PARAMS, each sub-run's training replaced by writing FAKE's history."""
    root = tmp_path_factory.mktemp("inits")
    store = make_store(root / "cifar10-32").path  # 20 px, 4 classes
    configs: dict = {}
    prepared: list = []

    def train_sub_run(ctx, sub, config):
        records, (status, reason) = FAKE[sub]
        configs[sub] = config
        ctx.run_dir(sub).mkdir(parents=True)
        (ctx.run_dir(sub) / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        return {"sub": sub, "status": status, "reason": reason}

    def prepared_from_tree(ctx, name, folder, size, holdout=0):
        prepared.append((name, folder, size, holdout))
        return store

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subruns, "train_sub_run", train_sub_run)
        mp.setattr(stores, "prepared_from_tree", prepared_from_tree)
        out = root / "out"
        doc = run_experiment("inits", budget="quick", out=out, params=PARAMS, cache=root / "cache", threads=1)
    return {"doc": doc, "out": out, "store": store, "configs": configs, "prepared": prepared,
            "record": record.load(out / "record.json")}


PER_SEED = {
    "cifar10/paper": {"steps_to_leave_chance": None, "loss_when_left": None, "left_within_cap": False, "cap": 1500,
                      "loss_at_cap": 1.36, "loss_at_init": 1.39, "logits_std_at_init": 0.02,
                      "logits_signal_at_init": 0.01, "status": "finished", "reason": ""},
    "cifar10/he-scaled": {"steps_to_leave_chance": 1100, "loss_when_left": 1.20, "left_within_cap": True,
                          "cap": 1500, "loss_at_cap": 1.10, "loss_at_init": 1.5, "logits_std_at_init": 0.8,
                          "logits_signal_at_init": 0.3, "status": "failed", "reason": "loss stuck at ln 4"},
    "cifar10/fan-in": {"steps_to_leave_chance": None, "loss_when_left": None, "left_within_cap": False, "cap": 1500,
                       "loss_at_cap": None, "loss_at_init": None, "logits_std_at_init": None,
                       "logits_signal_at_init": None, "status": "finished", "reason": ""},
}
ARMS = {key: {"label": key.replace("/", ", "), "per_seed": {"0": values}} for key, values in PER_SEED.items()}
PARAMS_TEXT = ("{'max_steps': 1500, 'log_every': 100, 'datasets': 'cifar10', 'inits': 'paper,he-scaled,fan-in', "
               "'batch_size': 16}")
NOTES = [f"Budget `quick`: {PARAMS_TEXT}. No warm-up; the preset's optimiser and rate."]
TABLE = ("|  | steps to loss < 0.9 ln C (cap 1500) | loss at the cap | loss at step 0 "
         "| image's share of the logits at step 0 |\n"
         "|---|---|---|---|---|\n"
         "| cifar10, paper | not within 1500 | 1.36 (1 seed) | 1.39 (1 seed) | 0.01 (1 seed) |\n"
         "| cifar10, he-scaled | 1,100 (1 seed) | 1.1 (1 seed) | 1.5 (1 seed) | 0.3 (1 seed) |\n"
         "| cifar10, fan-in | not within 1500 | not measured | not measured | not measured |\n")


def test_each_arm_holds_what_its_history_says(faked: dict) -> None:
    rec = faked["record"]
    assert rec["arms"] == ARMS  # (the record's keys are sorted; table.rows keeps the order)


def test_the_record_names_the_question_the_columns_and_the_budget(faked: dict) -> None:
    rec = faked["record"]
    assert rec["name"] == "inits"
    assert rec["question"] == ("How many steps does each initialisation need to leave chance (loss < 0.9 ln C), "
                               "and how much of the image reaches the logits at step 0?")
    assert rec["seeds"] == [0]
    assert rec["table"] == {"columns": [
        {"metric": "steps_to_leave_chance", "label": "steps to loss < 0.9 ln C (cap 1500)", "format": "int",
         "missing": "not within 1500"},
        {"metric": "loss_at_cap", "label": "loss at the cap", "format": "num"},
        {"metric": "loss_at_init", "label": "loss at step 0", "format": "num"},
        {"metric": "logits_signal_at_init", "label": "image's share of the logits at step 0", "format": "num"}],
        "rows": ["cifar10/paper", "cifar10/he-scaled", "cifar10/fan-in"]}
    assert rec["notes"] == NOTES


def test_the_results_document_carries_the_arms_the_table_and_the_notes(faked: dict) -> None:
    doc = faked["doc"]
    assert doc["seeds"] == [0] and doc["paper"] == {} and doc["notes"] == NOTES
    assert doc["results"]["arms"] == ARMS
    assert doc["results"]["params"] == {"max_steps": 1500, "log_every": 100, "datasets": "cifar10",
                                        "inits": "paper,he-scaled,fan-in", "batch_size": 16}
    assert doc["table"] == TABLE
    assert TABLE in (faked["out"] / "results.md").read_text()
    assert json.loads((faked["out"] / "experiment.json").read_text())["seeds"] == [0]


def test_each_sub_run_gets_the_init_the_cap_and_no_warm_up(faked: dict) -> None:
    assert faked["prepared"] == [("cifar10-32", "cifar10", 32, 100)]  # prepared at 32 px, 100 held out per class
    configs = faked["configs"]
    assert list(configs) == ["cifar10-paper-seed0", "cifar10-he-scaled-seed0", "cifar10-fan-in-seed0"]
    assert [c.model.init for c in configs.values()] == ["paper", "he-scaled", "fan-in"]
    for c in configs.values():
        assert c.data.store == str(faked["store"]) and c.run.seed == 0
        assert c.run.max_steps == 1500 and c.run.log_every == 100
        assert c.schedule.warmup_steps == 0 and c.run.health_window == 0
        assert c.optim.batch_size == 16  # the quick budget's, not the preset's 128
        assert c.data.crop == 20  # the preset's 28 cut to the store's 20 px images


def test_unknown_dataset_or_init_is_a_user_error_naming_the_parameter(tmp_path: Path) -> None:
    for param, name in (("datasets=imagenet", "datasets"), ("inits=xavier", "inits")):
        with pytest.raises(UserError, match=f"{name}: unknown '{param.split('=')[1]}'; allowed: "):
            run_experiment("inits", budget="quick", out=tmp_path / name, params=[param], cache=tmp_path / "cache")
