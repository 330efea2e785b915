"""Figure 1's measurement (§3.1): iterations to 25% training error, the trailing mean, and the tanh/ReLU ratio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from alexnet.experiments import run_experiment
from helpers import make_store, quadrant_images, recording_prepared_from_tree


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("cifar") / "cifar", train=160, val=48, size=32, classes=4).path


#: (activation, rate, seed) -> iterations to 25% (None: not within max_steps; "x": diverged).  The sweeps start
#: at [0.01, 0.03] with factor 3: ReLU goes up (0.03 -> 0.09 -> 0.27 diverges: 0.09 interior), tanh goes down
#: (0.01 beats 0.03 -> 0.00333 is slower: 0.01 interior).
REACHED = {("relu", 0.01, 0): 300, ("relu", 0.03, 0): 200, ("relu", 0.09, 0): 100, ("relu", 0.27, 0): "x",
           ("relu", 0.09, 1): 120, ("relu", 0.09, 2): 110,
           ("tanh", 0.00333, 0): 1200, ("tanh", 0.01, 0): 600, ("tanh", 0.03, 0): 900,
           ("tanh", 0.01, 1): 600, ("tanh", 0.01, 2): None}


def fake_outcome(step: int | str | None, cfg) -> tuple[int | None, bool, int, bool]:
    """What a sub-run whose rate reaches 25% at ``step`` (None: never; "x": diverges at once) gives under ``cfg``:
    (reached step, diverged, steps run, stopped slower). ``cfg.slower_than`` stops it there if it has not reached
    25% by then, as train_small does; past ``cfg.steps`` the table's step still counts (a short budget)."""
    if step == "x":
        return None, True, cfg.steps, False
    if 0 < cfg.slower_than < cfg.steps and (step is None or step > cfg.slower_than):
        return None, False, cfg.slower_than, True
    return step, False, step or cfg.steps, False


def test_sweeps_bracket_each_best_rate_and_the_ratio_is_per_seed(tmp_path: Path, cifar: Path, monkeypatch) -> None:
    from alexnet.experiments import record, relu_tanh

    inits = set()

    def fake_train_small(run_dir, cfg, train, log=None):
        inits.add((run_dir.name.split("-")[0], cfg.init))
        step, diverged, steps, slower = fake_outcome(REACHED[(cfg.activation, cfg.lr, cfg.seed)], cfg)
        return {"reached_step": step, "reached_epoch": None if step is None else step / 10, "diverged": diverged,
                "stuck_at_chance": False, "final_trailing_train_error": 0.25 if step else 0.4, "stopped_slower": slower,
                "seconds_per_step": 0.01, "steps": steps, "trailing_train_error": [0.9, 0.25],
                "trailing_every": 1, "steps_per_epoch": 10, "train_images": 160, "wall_seconds": 1.0}

    monkeypatch.setattr(relu_tanh, "train_small", fake_train_small)
    out = tmp_path / "rt"
    run_experiment("relu-tanh", budget="quick", out=out, seeds=3, params=[
        "max_steps=1000", "modern_lrs=[0.01, 0.03]", "paper_lrs=[0.01, 0.03]", "train_images=0", "max_extensions=4"],
        stores={"cifar10-32": cifar}, cache=tmp_path / "cache", threads=1)
    assert inits == {("paper", "cuda-convnet"), ("modern", "default")}
    rec = record.load(out / "record.json")
    for arm in ("paper", "modern"):
        relu, tanh = rec["sweeps"][f"{arm}/relu"], rec["sweeps"][f"{arm}/tanh"]
        assert [p["lr"] for p in relu["points"]] == [0.01, 0.03, 0.09, 0.27] and relu["points"][-1]["diverged"]
        assert relu["best"] == 0.09 and relu["status"] == "interior" and relu["extensions"] == 2
        assert [p["lr"] for p in tanh["points"]] == [0.00333, 0.01, 0.03]
        assert tanh["best"] == 0.01 and tanh["status"] == "interior" and tanh["range"] == [0.00333, 0.03]
        # 0.03 (900) and 0.00333 (1200) stop at step 600, where 0.01 reached 25%: slower, not run to 1000
        assert [(p["reached_step"], p["steps"], p["stopped_slower"]) for p in tanh["points"]] == [
            (None, 600, True), (600, 600, False), (None, 600, True)]
        assert not any(p["stopped_slower"] for p in relu["points"])
        per_seed = rec["arms"][f"{arm}/relu"]["per_seed"]
        assert [per_seed[s]["iterations_to_target"] for s in "012"] == [100, 120, 110]
        ratio = rec["arms"][f"{arm}/ratio"]["per_seed"]
        assert ratio["0"]["ratio_tanh_over_relu"] == pytest.approx(6.0)
        assert ratio["1"]["ratio_tanh_over_relu"] == pytest.approx(5.0)
        assert ratio["2"]["ratio_tanh_over_relu"] is None and ratio["2"]["ratio_lower_bound"] == pytest.approx(
            1000 / 110)
    table = record.render(rec)
    assert "| paper: tanh / ReLU | — | — | 5.5 ± 0.7071 (n = 2) |" in table
    assert "| paper: ReLU, lr 0.09 | 110 ± 10 (n = 3) |" in table
    assert "**the first is better**" in table  # ReLU [100, 120, 110] vs tanh [600, 600]
    assert rec["table"]["reference"][0]["values"]["ratio_tanh_over_relu"] == 6.0  # §3.1: six times faster
    assert (out / "relu-tanh.png").is_file()


def test_the_target_is_checked_on_the_trailing_mean_not_one_batch(tmp_path: Path, monkeypatch) -> None:
    """cuda-convnet reported the training error as a mean over recent mini-batches: one lucky batch is not 25%.
    With a frozen network (rate 0) each step's error is known; the first step whose mean over the last
    ``window`` steps is at most the target is the reached step."""
    from alexnet.experiments import smallnet
    from alexnet.experiments.smallnet import FourLayerNet, SmallRun, train_small

    x = torch.randn(8, 3, 32, 32)
    cfg = SmallRun(lr=0.0, steps=12, batch_size=8, window=3, stop_at_error=0.5, give_up_after=0, checkpoint_every=0,
                   seed=3)
    torch.manual_seed(cfg.seed)
    model = FourLayerNet(cfg.activation, cfg.lrn, 2, 32, cfg.init)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    errors = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0]  # trailing means of 3: 1 1 1 2/3 2/3 2/3 2/3 1/3 ...

    def batch(xs, ys, step, c):
        return x, (1 - predicted) if errors[step] else predicted

    monkeypatch.setattr(smallnet, "_batch", batch)
    result = train_small(tmp_path / "run", cfg, (x, torch.tensor([0, 1] * 4)))
    assert result["reached_step"] == 8  # steps 6-8: errors 1, 0, 0; a single batch reached 0 at step 4
    assert result["trailing_train_error"][:8] == pytest.approx([1, 1, 1, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 1 / 3])
    assert np.isclose(result["final_trailing_train_error"], 1 / 3)


# --------------------------------------------------------------------------- the record's numbers, with a fake trainer

#: A fake run's fixed fields (what every sweep point and per-seed entry copies through).
SECONDS_PER_STEP, WALL_SECONDS, TRAILING_EVERY, STEPS_PER_EPOCH = 0.01, 3.0, 5, 10
#: A run that reached 25% ends at trailing error 0.2; one that did not, at 0.4; a diverged one has none.
REACHED_ERROR, UNREACHED_ERROR = 0.2, 0.4


def fake_trainer(table: dict, calls: list) -> Callable:
    """A ``train_small`` stand-in: the reached step is ``table[(activation, lr, seed)]`` (None: not within
    ``cfg.steps``; "x": diverged); every call is appended to ``calls`` as (run_dir, cfg, images, log)."""

    def train_small(run_dir, cfg, train, log=None):
        calls.append((run_dir, cfg, train[0], log))
        step, diverged, steps, slower = fake_outcome(table[(cfg.activation, cfg.lr, cfg.seed)], cfg)
        return {"reached_step": step, "reached_epoch": None if step is None else step / STEPS_PER_EPOCH,
                "diverged": diverged, "stuck_at_chance": False, "stopped_slower": slower,
                "final_trailing_train_error": None if diverged else REACHED_ERROR if step else UNREACHED_ERROR,
                "seconds_per_step": SECONDS_PER_STEP, "steps": steps, "wall_seconds": WALL_SECONDS,
                "trailing_train_error": [0.9, REACHED_ERROR], "trailing_every": TRAILING_EVERY,
                "steps_per_epoch": STEPS_PER_EPOCH, "train_images": int(train[0].shape[0])}

    return train_small


def expected_run(lr: float, step: int | str | None, *, max_steps: int, images: int) -> dict:
    """The per-seed entry the fake's run gives (by hand from :func:`fake_trainer`)."""
    diverged = step == "x"
    step = None if diverged else step
    return {"iterations_to_target": step, "epochs_to_target": None if step is None else step / STEPS_PER_EPOCH,
            "lr": lr, "reached": step is not None, "steps": step or max_steps, "diverged": diverged,
            "final_trailing_train_error": None if diverged else REACHED_ERROR if step else UNREACHED_ERROR,
            "train_images": images, "seconds_per_step": SECONDS_PER_STEP, "wall_seconds": WALL_SECONDS}


def expected_point(lr: float, step: int | str | None, *, max_steps: int) -> dict:
    """A sweep point as the record keeps it (by hand from :func:`fake_trainer`)."""
    diverged = step == "x"
    step = None if diverged else step
    return {"lr": lr, "reached_step": step, "reached_epoch": None if step is None else step / STEPS_PER_EPOCH,
            "steps": step or max_steps, "diverged": diverged, "stuck_at_chance": False,
            "final_trailing_train_error": None if diverged else REACHED_ERROR if step else UNREACHED_ERROR,
            "seconds_per_step": SECONDS_PER_STEP, "wall_seconds": WALL_SECONDS, "stopped_slower": False}


#: Four seeds, rate factor 2, one extension at most, 500 steps.  paper/relu from [0.01, 0.02] goes up to 0.04,
#: which diverges: 0.02 interior.  paper/tanh: 0.02 does not reach 25%, so down to 0.005 (slower): 0.01 interior.
#: modern/relu keeps getting faster upwards (0.4 after the one extension: not bracketed); modern/tanh downwards
#: (0.05: not bracketed).
SWEEPS = {
    "paper/relu": {0.01: 300, 0.02: 200, 0.04: "x"},
    "paper/tanh": {0.005: 900, 0.01: 600, 0.02: None},
    "modern/relu": {0.1: 150, 0.2: 100, 0.4: 50},
    "modern/tanh": {0.05: 700, 0.1: 800, 0.2: 900},
}
#: The other seeds at each chosen rate: paper seeds 1 and 2 reach with ReLU only (lower bounds 500/250 and
#: 500/200), seed 3 with tanh only (no ratio); modern seed 2's ReLU diverges, seed 3's tanh diverges.
BEST = {"paper/relu": (0.02, {1: 250, 2: 200, 3: None}), "paper/tanh": (0.01, {1: None, 2: None, 3: 700}),
        "modern/relu": (0.4, {1: 60, 2: "x", 3: 40}), "modern/tanh": (0.05, {1: 300, 2: 350, 3: "x"})}
#: Each sweep point's slower_than, by hand: the initial rates in ascending order, then the extension; each stops at
#: the fewest iterations to 25% among the points before it (0: none reached yet).
SWEEP_CAPS = {"paper/relu": {0.01: 0, 0.02: 300, 0.04: 200}, "paper/tanh": {0.01: 0, 0.02: 600, 0.005: 600},
              "modern/relu": {0.1: 0, 0.2: 150, 0.4: 100}, "modern/tanh": {0.1: 0, 0.2: 800, 0.05: 800}}
TABLE = {(key.split("/")[1], lr, 0): step for key, points in SWEEPS.items() for lr, step in points.items()} | {
    (key.split("/")[1], lr, seed): step for key, (lr, steps) in BEST.items() for seed, step in steps.items()}
PARAMS = ["max_steps=500", "window=5", "batch_size=16", "give_up_after=7", "rate_factor=2", "max_extensions=1",
          "train_images=40", "paper_lrs=[0.01, 0.02]", "modern_lrs=[0.1, 0.2]"]


@pytest.fixture(scope="module")
def four_seeds(cifar: Path, tmp_path_factory) -> dict:
    """The experiment run once with :data:`TABLE`'s fake trainer, progress shown: what it wrote and was called
    with."""
    from alexnet.experiments import record, relu_tanh, stores

    calls: list = []
    prepared: list = []
    prepared_from_tree = recording_prepared_from_tree(prepared)

    def log(message: str) -> None:
        pass

    root = tmp_path_factory.mktemp("four-seeds")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(relu_tanh, "train_small", fake_trainer(TABLE, calls))
        mp.setattr(stores, "prepared_from_tree", prepared_from_tree)
        doc = run_experiment("relu-tanh", budget="quick", out=root / "out", seeds=4, params=PARAMS,
                             stores={"cifar10-32": cifar}, cache=root / "cache", threads=2, progress=True, log=log)
    return {"doc": doc, "record": record.load(root / "out" / "record.json"), "calls": calls, "log": log,
            "prepared": prepared, "out": root / "out"}


def test_every_sub_run_gets_the_budget_the_target_and_the_shown_progress(four_seeds: dict) -> None:
    """Each sub-run trains for max_steps at batch_size, averages the last ``window`` errors, stops at 25%,
    gives up after give_up_after steps at chance, uses the experiment's threads and log (progress shown);
    sub-runs are counted (3 sweep points + 3 more seeds, four times). A sweep point stops at the step at which the
    fastest rate tried before it reached 25% (:data:`SWEEP_CAPS`); the other seeds run to max_steps."""
    calls = four_seeds["calls"]
    assert len(calls) == 24 and four_seeds["doc"]["runs"] == 24
    caps = {}
    for run_dir, cfg, _, log in calls:
        assert (cfg.steps, cfg.batch_size, cfg.window, cfg.stop_at_error, cfg.threads, cfg.give_up_after) == (
            500, 16, 5, 0.25, 2, 7)
        assert log is four_seeds["log"]
        caps[(f"{run_dir.name.split('-')[0]}/{cfg.activation}", cfg.lr, cfg.seed)] = cfg.slower_than
    assert caps == {(key, lr, 0): cap for key, points in SWEEP_CAPS.items() for lr, cap in points.items()} | {
        (key, lr, seed): 0 for key, (lr, steps) in BEST.items() for seed in steps}
    assert four_seeds["prepared"] == [("cifar10-32", "cifar10", 32, 0)]


def test_sub_runs_train_on_the_subset_at_the_arms_input_scale(four_seeds: dict, cifar: Path) -> None:
    """train_images=40: a derived store of 40 training images (1 val, 1 train_eval), named in the notes; the
    paper arm trains on them at §2's scale (0-255 minus the mean image), the modern arm divided by their std."""
    from alexnet.data.store import Store

    note = four_seeds["record"]["notes"][2]
    assert note.startswith("Training images: 40 (store ") and note.endswith(").")
    derived = Path(note[len("Training images: 40 (store "):-2])
    assert derived != cifar
    store = Store(derived)
    assert [len(store.split(s)) for s in ("train", "val", "train_eval")] == [40, 1, 1]
    raw = store.split("train").read(np.arange(40)).astype(np.float32)
    centred = torch.from_numpy((raw - raw.mean(0)).transpose(0, 3, 1, 2))
    for run_dir, cfg, images, _ in four_seeds["calls"]:
        arm = run_dir.name.split("-")[0]
        expected = centred if arm == "paper" else centred / float(centred.std(unbiased=False))
        assert images.shape == (40, 3, 32, 32)
        assert torch.allclose(images, expected, atol=1e-4), run_dir.name


def test_the_record_keeps_every_sweep_point_and_each_seed_at_the_chosen_rate(four_seeds: dict) -> None:
    """The sweeps as :data:`SWEEPS` gives them by hand (points, best, status, range), each seed's values at
    the chosen rate, the labels (with "(not bracketed)" where the best is at an edge) and the ratios
    tanh / ReLU per seed: a lower bound where only ReLU reached 25%, nothing where ReLU did not or tanh diverged."""
    rec = four_seeds["record"]
    for key, points in SWEEPS.items():
        sweep = rec["sweeps"][key]
        assert sweep["points"] == [expected_point(lr, points[lr], max_steps=500) for lr in sorted(points)], key
        assert sweep["range"] == [min(points), max(points)] and sweep["extensions"] == 1
        lr, others = BEST[key]
        assert sweep["best"] == lr
        steps = {0: points[lr], **others}
        assert rec["arms"][key]["per_seed"] == {
            str(seed): expected_run(lr, step, max_steps=500, images=40) for seed, step in steps.items()}, key
    assert rec["sweeps"]["paper/relu"]["status"] == rec["sweeps"]["paper/tanh"]["status"] == "interior"
    assert rec["sweeps"]["modern/relu"]["status"] == ("not bracketed: the best rate 0.4 is the highest tried "
                                                      "after 1 extension(s) (the limit)")
    assert {key: arm["label"] for key, arm in rec["arms"].items()} == {
        "paper/relu": "paper: ReLU, lr 0.02", "paper/tanh": "paper: tanh, lr 0.01", "paper/ratio": "paper: tanh / ReLU",
        "modern/relu": "modern: ReLU, lr 0.4 (not bracketed)",
        "modern/tanh": "modern: tanh, lr 0.05 (not bracketed)", "modern/ratio": "modern: tanh / ReLU"}
    assert rec["arms"]["paper/ratio"]["per_seed"] == {
        "0": {"ratio_tanh_over_relu": 3.0}, "1": {"ratio_tanh_over_relu": None, "ratio_lower_bound": 2.0},
        "2": {"ratio_tanh_over_relu": None, "ratio_lower_bound": 2.5}, "3": {"ratio_tanh_over_relu": None}}
    assert rec["arms"]["modern/ratio"]["per_seed"] == {
        "0": {"ratio_tanh_over_relu": 14.0}, "1": {"ratio_tanh_over_relu": 5.0}, "2": {"ratio_tanh_over_relu": None},
        "3": {"ratio_tanh_over_relu": None}}


def test_the_notes_spell_out_each_sweep_and_the_lower_bounds(four_seeds: dict) -> None:
    """Notes: the trailing window and batch, the training images, the missing-cell mark, the sweep rule, one line
    per sweep (rate -> iterations, "diverged" or "> steps (final error)"), and the lower bounds apart."""
    notes = four_seeds["record"]["notes"]
    assert notes[0].startswith("Budget `quick`: {") and "'max_steps': 500" in notes[0]
    assert notes[1] == ("Training error = mean top-1 error of the last 5 training mini-batches of 16; the target is "
                        "25% (§3.1). No weight decay, dropout or augmentation.")
    assert notes[3:] == [
        "— in an iterations cell: no seed of that row reached the target within max_steps.",
        "Rates chosen on seed 0's training error (the paper's criterion: 'as fast as possible'); a sweep extends "
        "by ×/÷2 while its best rate is at an edge, at most 1 times. A sweep point stops at the step at which the "
        "fastest rate tried before it reached the target, if it has not reached it by then (it cannot be the "
        "fastest).",
        "Sweep paper/relu: 0.01 → 300, 0.02 → 200, 0.04 → diverged; best 0.02 in [0.01, 0.04]: interior.",
        "Sweep paper/tanh: 0.005 → 900, 0.01 → 600, 0.02 → > 500 (40.0%); best 0.01 in [0.005, 0.02]: interior.",
        "Sweep modern/relu: 0.1 → 150, 0.2 → 100, 0.4 → 50; best 0.4 in [0.1, 0.4]: not bracketed: the best rate "
        "0.4 is the highest tried after 1 extension(s) (the limit).",
        "Sweep modern/tanh: 0.05 → 700, 0.1 → 800, 0.2 → 900; best 0.05 in [0.05, 0.2]: not bracketed: the best "
        "rate 0.05 is the lowest tried after 1 extension(s) (the limit).",
        "paper: tanh did not reach 25% in 2 seed(s); ratio at least 2.00, 2.50 there (not in the mean)."]


def test_the_record_names_its_question_table_and_seeds(four_seeds: dict) -> None:
    """The record's head (name, question, seeds), its table's columns and the paper's reference row (six times)."""
    rec = four_seeds["record"]
    assert rec["name"] == "relu-tanh" and rec["seeds"] == [0, 1, 2, 3]
    assert rec["question"] == ("How many times fewer iterations does the four-layer CIFAR-10 network need to reach "
                               "25% training error with ReLUs than with tanh units, each at its fastest rate "
                               "(Figure 1)?")
    assert rec["table"]["columns"] == [
        {"metric": "iterations_to_target", "label": "iterations to 25%", "format": "int", "missing": "—"},
        {"metric": "epochs_to_target", "label": "epochs", "format": "num", "missing": "—"},
        {"metric": "ratio_tanh_over_relu", "label": "tanh / ReLU", "format": "num", "missing": "—"}]
    assert rec["table"]["reference"] == [{"label": "paper (Figure 1)", "values": {"ratio_tanh_over_relu": 6.0}}]


def test_the_results_file_holds_the_seeds_params_paper_values_and_notes(four_seeds: dict) -> None:
    """results.json (and experiment.json) name the seeds; results.json the parameters, the paper's numbers
    (six times, 25%) and the record's notes."""
    doc = four_seeds["doc"]
    assert doc["seeds"] == [0, 1, 2, 3]
    assert json.loads((four_seeds["out"] / "experiment.json").read_text())["seeds"] == [0, 1, 2, 3]
    assert doc["results"]["params"]["max_steps"] == 500 and doc["results"]["params"]["rate_factor"] == 2.0
    assert doc["paper"] == {"relu_tanh_speedup": 6.0, "target_train_error": 0.25}
    assert doc["notes"] == four_seeds["record"]["notes"] and len(doc["notes"]) == 10


def test_one_arm_on_a_store_with_only_training_images(tmp_path: Path, monkeypatch) -> None:
    """arms=modern alone (no paper entries); train_images=0 uses the store as given (named in the notes), of
    which only the training split is read; without progress the sub-runs get no log."""
    from alexnet.data.shards import write_store
    from alexnet.experiments import record, relu_tanh

    images, labels = quadrant_images(24, 32, 4, np.random.default_rng(1))
    store = write_store(tmp_path / "train-only", {"train": (images, labels)},
                        [(f"n{i:08d}", f"class {i}") for i in range(4)]).path
    calls: list = []
    table = {("relu", 0.01, 0): 200, ("relu", 0.03, 0): 100, ("tanh", 0.01, 0): 600, ("tanh", 0.03, 0): 900}
    monkeypatch.setattr(relu_tanh, "train_small", fake_trainer(table, calls))
    run_experiment("relu-tanh", budget="quick", out=tmp_path / "out", seeds=1, params=[
        "arms=modern", "modern_lrs=[0.01, 0.03]", "train_images=0", "max_extensions=0"],
        stores={"cifar10-32": store}, cache=tmp_path / "cache", threads=1)
    rec = record.load(tmp_path / "out" / "record.json")
    assert set(rec["arms"]) == {"modern/relu", "modern/tanh", "modern/ratio"}
    assert rec["notes"][2] == f"Training images: 24 (store {store})."
    assert rec["arms"]["modern/ratio"]["per_seed"] == {"0": {"ratio_tanh_over_relu": 6.0}}  # 600 / 100
    assert all(log is None and images.shape == (24, 3, 32, 32) for _, _, images, log in calls)


def test_an_unknown_arm_is_a_user_error(tmp_path: Path) -> None:
    """arms= names only known arms; the message names the parameter and the unknown arm."""
    from alexnet.errors import UserError

    with pytest.raises(UserError, match="arms: unknown arm 'ancient'; allowed: paper, modern"):
        run_experiment("relu-tanh", budget="quick", out=tmp_path / "out", params=["arms=paper,ancient"],
                       cache=tmp_path / "cache", threads=1)


def test_rank_puts_reached_runs_first_then_unreached_by_final_error_then_diverged() -> None:
    """(0, iterations) for a run that reached 25%, (1, final trailing error) for one that did not (1.0 when it
    has none), (2, 0) for a diverged one."""
    from alexnet.experiments.relu_tanh import rank

    def run(step, error=None, diverged=False) -> dict:
        return {"reached_step": step, "final_trailing_train_error": error, "diverged": diverged}

    assert rank(run(300, 0.2)) == (0, 300.0)
    assert rank(run(None, 0.4)) == (1, 0.4)
    assert rank(run(None, None)) == (1, 1.0)
    assert rank(run(None, None, diverged=True)) == (2, 0.0)
    assert sorted([run(None, 0.4), run(None, None, True), run(5000, 0.2), run(None, 0.3)], key=rank) == [
        run(5000, 0.2), run(None, 0.3), run(None, 0.4), run(None, None, True)]


# --------------------------------------------------------------------------- the plot


def plot_run(lr: float, seed: int, curve: list[float]) -> dict:
    """What :func:`relu_tanh._plot` reads of one sub-run: its curve every 5 steps, 10 steps an epoch."""
    return {"lr": lr, "seed": seed, "trailing_train_error": curve, "trailing_every": TRAILING_EVERY,
            "steps_per_epoch": STEPS_PER_EPOCH}


def test_the_plot_draws_each_seeds_curve_per_arm_against_epochs(tmp_path: Path, monkeypatch) -> None:
    """One panel per arm titled by it; each seed's trailing error against epochs ((i * 5 + 1) / 10), ReLU solid
    and tanh dashed, only seed 0's curve in the legend (with its rate); the 25% target as a horizontal line."""
    from alexnet.experiments import plotting, relu_tanh

    figures = []
    save = plotting.save_figure
    monkeypatch.setattr(plotting, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    curves = {"paper/relu": [plot_run(0.02, 0, [0.9, 0.5, 0.2]), plot_run(0.02, 1, [0.8, 0.4, 0.24])],
              "paper/tanh": [plot_run(0.01, 0, [0.9, 0.7, 0.6]), plot_run(0.01, 1, [0.85, 0.75, 0.65])],
              "modern/relu": [plot_run(0.4, 0, [0.7, 0.3]), plot_run(0.4, 1, [0.6, 0.35])],
              "modern/tanh": [plot_run(0.05, 0, [0.95, 0.55]), plot_run(0.05, 1, [0.92, 0.45])]}
    path = relu_tanh._plot(tmp_path / "fig.png", curves, ["paper", "modern"])
    assert path.is_file()
    (fig,) = figures
    assert [ax.get_title() for ax in fig.axes] == ["Figure 1, paper's conditions (0-255 inputs, layers-18pct init)",
                                                   "Figure 1, modern (inputs / std, fan-in init)"]
    for ax, arm in zip(fig.axes, ["paper", "modern"]):
        assert ax.get_ylabel() == "training error rate"
        *lines, target = ax.lines
        assert list(target.get_ydata()) == [0.25, 0.25]
        runs = curves[f"{arm}/relu"] + curves[f"{arm}/tanh"]
        assert len(lines) == len(runs) == 4
        for line, r, style in zip(lines, runs, ["-", "-", "--", "--"]):
            n = len(r["trailing_train_error"])
            assert np.allclose(line.get_xdata(), [(i * 5 + 1) / 10 for i in range(n)])
            assert list(line.get_ydata()) == r["trailing_train_error"] and line.get_linestyle() == style
        labelled = {line.get_label(): list(line.get_ydata()) for line in lines if not line.get_label().startswith("_")}
        lr_relu, lr_tanh = curves[f"{arm}/relu"][0]["lr"], curves[f"{arm}/tanh"][0]["lr"]
        assert labelled == {f"ReLU lr {lr_relu:g}": curves[f"{arm}/relu"][0]["trailing_train_error"],
                            f"tanh lr {lr_tanh:g}": curves[f"{arm}/tanh"][0]["trailing_train_error"]}


def test_kept_sub_runs_carry_an_interrupted_experiment_to_another_run_folder(tmp_path: Path, cifar: Path,
                                                                            monkeypatch) -> None:
    """``--keep``: every finished sub-run's result is copied to the keep folder as it finishes, so an experiment
    interrupted on one machine (its run folder lost) continues elsewhere, training only what had not finished,
    and ends with the record an uninterrupted run writes. A folder kept with other parameters is refused."""
    from alexnet.errors import UserError
    from alexnet.experiments import record, relu_tanh

    trained: list[str] = []
    budget = {"n": 10 ** 9}

    def fake_train_small(run_dir, cfg, train, log=None):
        if (run_dir / "result.json").is_file():  # as train_small: a finished run is read back
            return json.loads((run_dir / "result.json").read_text())
        if len(trained) >= budget["n"]:
            raise KeyboardInterrupt  # the machine goes away
        trained.append(run_dir.name)
        step, diverged, steps, slower = fake_outcome(REACHED[(cfg.activation, cfg.lr, cfg.seed)], cfg)
        r = {"reached_step": step, "reached_epoch": None if step is None else step / 10, "diverged": diverged,
             "stuck_at_chance": False, "final_trailing_train_error": 0.25 if step else 0.4, "seconds_per_step": 0.01,
             "stopped_slower": slower, "steps": steps, "trailing_train_error": [0.9, 0.25], "trailing_every": 1,
             "steps_per_epoch": 10, "train_images": 160, "wall_seconds": 1.0}
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "result.json").write_text(json.dumps(r))
        return r

    monkeypatch.setattr(relu_tanh, "train_small", fake_train_small)
    params = ["max_steps=1000", "modern_lrs=[0.01, 0.03]", "paper_lrs=[0.01, 0.03]", "train_images=0",
              "max_extensions=4", "arms=paper"]

    def experiment(out: str, extra: list[str] = ()) -> dict:
        return run_experiment("relu-tanh", budget="quick", out=tmp_path / out, seeds=3, params=params + list(extra),
                              stores={"cifar10-32": cifar}, cache=tmp_path / "cache", threads=1,
                              keep=tmp_path / "kept")

    budget["n"] = 5
    with pytest.raises(KeyboardInterrupt):
        experiment("first-machine")
    first = list(trained)
    assert len(first) == 5 and sorted(p.name for p in (tmp_path / "kept").iterdir() if p.is_dir()) == sorted(first)
    budget["n"] = 10 ** 9
    experiment("second-machine")
    assert not set(trained[5:]) & set(first) and len(trained) == 11  # 4 + 3 sweep points, 2 + 2 more seeds
    trained.clear()
    experiment("third-machine")  # everything kept: nothing trains
    assert trained == []
    run_experiment("relu-tanh", budget="quick", out=tmp_path / "whole", seeds=3, params=params,
                   stores={"cifar10-32": cifar}, cache=tmp_path / "cache", threads=1)  # no interruption, no keep
    for name in ("second-machine", "third-machine"):
        kept = record.load(tmp_path / name / "record.json")
        whole = record.load(tmp_path / "whole" / "record.json")
        assert kept["arms"] == whole["arms"] and kept["sweeps"] == whole["sweeps"], name
    with pytest.raises(UserError, match=r"kept keeps sub-runs made with max_steps=1000, this run has max_steps=900"):
        experiment("fourth", ["max_steps=900"])
    experiment("fifth", ["arms=modern"])  # another arm into the same folder: its sub-runs are named by arm
    assert any(p.name.startswith("modern-") for p in (tmp_path / "kept").iterdir())
    with pytest.raises(UserError, match=r"kept keeps sub-runs of budget 'quick', not 'full'"):
        run_experiment("relu-tanh", budget="full", out=tmp_path / "f", keep=tmp_path / "kept")
    with pytest.raises(UserError, match=r"^keep: imagenette-128 cannot keep its sub-runs in a folder; experiments "
                                        r"that can: relu-tanh, lrn, fashion-mnist$"):
        run_experiment("imagenette-128", budget="quick", out=tmp_path / "i", keep=tmp_path / "kept2")


def test_a_sweep_point_in_the_notes_says_why_it_stopped() -> None:
    from alexnet.experiments.relu_tanh import point_text

    base = {"diverged": False, "reached_step": None, "steps": 1000, "final_trailing_train_error": 0.706,
            "stopped_slower": False, "stuck_at_chance": False}
    assert point_text({**base, "reached_step": 812, "steps": 812}) == "812"
    assert point_text({**base, "diverged": True, "final_trailing_train_error": None}) == "diverged"
    assert point_text(base) == "> 1000 (70.6%)"  # ran to max_steps
    assert point_text({**base, "stuck_at_chance": True}) == "> 1000 (70.6%, gave up: loss still at chance)"
    assert point_text({**base, "stopped_slower": True}) == "> 1000 (70.6%, stopped: slower than the fastest so far)"
