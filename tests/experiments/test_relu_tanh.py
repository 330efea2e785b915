"""Figure 1's measurement (§3.1): iterations to 25% training error, the trailing mean, and the tanh/ReLU ratio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.experiments import run_experiment
from helpers import make_store


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


def test_sweeps_bracket_each_best_rate_and_the_ratio_is_per_seed(tmp_path: Path, cifar: Path, monkeypatch) -> None:
    from alexnet.experiments import record, relu_tanh

    inits = set()

    def fake_train_small(run_dir, cfg, train, log=None):
        inits.add((run_dir.name.split("-")[0], cfg.init))
        step = REACHED[(cfg.activation, cfg.lr, cfg.seed)]
        diverged = step == "x"
        step = None if diverged else step
        return {"reached_step": step, "reached_epoch": None if step is None else step / 10, "diverged": diverged,
                "stuck_at_chance": False, "final_trailing_train_error": 0.25 if step else 0.4,
                "seconds_per_step": 0.01, "steps": step or cfg.steps, "trailing_train_error": [0.9, 0.25],
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
