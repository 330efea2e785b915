"""Issue 17's LRN experiment: inputs at §2's scale, alpha·sum(a²)/k measured, decisions on a holdout slice,
and the bracketing rate sweep it shares with relu-tanh."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.experiments import record, run_experiment
from alexnet.experiments.smallnet import FourLayerNet, SmallRun, cifar_tensors, error_rate, lrn_statistics, train_small
from alexnet.experiments.sweep import INTERIOR, bracketing_sweep, next_rate
from alexnet.net.lrn import LocalResponseNorm
from alexnet.paper import CIFAR, LRN_PARAMS
from helpers import make_store


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("cifar") / "cifar", train=160, val=48, size=32, classes=4).path


# --------------------------------------------------------------------------- the sweep


def test_sweep_extends_upwards_until_the_best_rate_is_interior() -> None:
    calls = []

    def score(lr):  # fastest at 0.3: distance in decades
        calls.append(lr)
        return abs(math.log10(lr / 0.3))

    s = bracketing_sweep([0.01, 0.03], score, factor=3, max_extensions=5)
    # 0.03 is best and highest -> 0.09 -> 0.27 -> 0.81 (worse than 0.27): 0.27 is interior
    assert calls == [0.01, 0.03, 0.09, 0.27, 0.81]
    assert s["best"] == 0.27 and s["status"] == INTERIOR and s["extensions"] == 3 and s["range"] == [0.01, 0.81]
    assert list(s["scores"]) == [0.01, 0.03, 0.09, 0.27, 0.81]


def test_sweep_extends_downwards_and_says_when_the_limit_stops_it() -> None:
    s = bracketing_sweep([0.1, 1.0], lambda lr: lr, factor=10, max_extensions=2)  # lower is always better
    assert s["scores"] == {0.001: 0.001, 0.01: 0.01, 0.1: 0.1, 1.0: 1.0}
    assert s["best"] == 0.001 and s["extensions"] == 2
    assert s["status"].startswith("not bracketed") and "lowest" in s["status"]
    # failures rank last: a diverged top rate makes the best interior at once
    s = bracketing_sweep([0.01, 0.03, 0.1], lambda lr: (1, 0) if lr > 0.05 else (0, -lr), max_extensions=3)
    assert s["best"] == 0.03 and s["status"] == INTERIOR and s["extensions"] == 0
    assert next_rate(0.01, 3, up=False) == 0.00333 and next_rate(0.1, 3, up=True) == 0.3


# --------------------------------------------------------------------------- inputs and the LRN statistic


def test_raw_inputs_are_pixels_minus_the_mean_image_and_std_divides_them(cifar: Path) -> None:
    from alexnet.experiments.stores import load_arrays

    images, labels = load_arrays(cifar, "train")
    mean = images.astype(np.float64).mean(0)
    raw = cifar_tensors(cifar, ("train",), scale="raw")["train"][0]
    std = cifar_tensors(cifar, ("train",), scale="std")["train"][0]
    i = 7
    expected = (images[i].astype(np.float64) - mean).transpose(2, 0, 1)
    np.testing.assert_allclose(raw[i].numpy(), expected, atol=1e-3)
    sigma = float(np.sqrt(((images.astype(np.float64) - mean) ** 2).mean()))
    np.testing.assert_allclose(std[i].numpy(), expected / sigma, rtol=1e-4, atol=1e-5)
    assert sigma > 10  # the scale the std arm takes away
    split = cifar_tensors(cifar, ("train", "val"), scale="raw", holdout_per_class=5)
    assert len(split["holdout"][1]) == 20 and len(split["train"][1]) == 140
    assert sorted(np.bincount(split["holdout"][1].numpy()).tolist()) == [5, 5, 5, 5]
    with pytest.raises(Exception, match="input_scale"):
        cifar_tensors(cifar, ("train",), scale="pixels")


def test_lrn_statistic_is_alpha_times_the_window_sum_of_squares_over_k() -> None:
    """By hand on 6 maps with n = 5: the window of map i is i-2..i+2 clipped; and the layer's output is
    a / (k (1 + s))^beta with exactly that s."""
    a = torch.arange(1.0, 7.0).reshape(1, 6, 1, 1) * 30  # 30, 60, ..., 180
    layer = LocalResponseNorm(LRN_PARAMS.n, LRN_PARAMS.alpha, LRN_PARAMS.beta, LRN_PARAMS.k)
    model = torch.nn.Sequential()
    model.add_module("lrn1", layer)
    sq = (a.flatten() ** 2).tolist()
    s = [LRN_PARAMS.alpha * sum(sq[max(0, i - 2):i + 3]) / LRN_PARAMS.k for i in range(6)]
    # map 0: 1e-4 * (900 + 3600 + 8100) / 2 = 0.63; map 3: 1e-4 * (3600+8100+14400+22500+32400) / 2 = 4.05
    assert s[0] == pytest.approx(0.63) and s[3] == pytest.approx(4.05)
    stats = lrn_statistics(model, a)
    assert stats["lrn1"]["mean"] == pytest.approx(np.mean(s)) and stats["lrn1"]["max"] == pytest.approx(max(s))
    expected = a.flatten() / (LRN_PARAMS.k * (1 + torch.tensor(s))) ** LRN_PARAMS.beta
    torch.testing.assert_close(layer(a).flatten(), expected)
    # alpha divided by n (the 2012 code's reading) shrinks the statistic n times
    layer.alpha_divided_by_n = True
    assert lrn_statistics(model, a)["lrn1"]["mean"] == pytest.approx(np.mean(s) / LRN_PARAMS.n)


def test_the_statistic_at_the_paper_scale_is_thousands_of_times_the_std_scale(cifar: Path) -> None:
    """The issue's point: dividing the inputs by ~64 divides alpha·sum(a²) by ~64² at initialisation."""
    raw = cifar_tensors(cifar, ("train",), scale="raw")["train"][0][:32]
    std = cifar_tensors(cifar, ("train",), scale="std")["train"][0][:32]
    torch.manual_seed(0)
    model = FourLayerNet("relu", lrn=True, num_classes=4)
    r, s = lrn_statistics(model, raw)["lrn1"]["mean"], lrn_statistics(model, std)["lrn1"]["mean"]
    sigma = float((raw / std)[std.abs() > 1e-3].median())
    assert r / s > 0.5 * sigma ** 2  # conv1's bias keeps it from being exactly sigma²


# --------------------------------------------------------------------------- holdout decisions


def test_the_best_holdout_weights_are_kept_and_the_test_is_read_with_them(tmp_path: Path, cifar: Path) -> None:
    data = cifar_tensors(cifar, ("train", "val"), holdout_per_class=5)
    cfg = SmallRun(lr=0.05, steps=12, batch_size=16, eval_every=3, stats_every=4, lrn=True, threads=1,
                   give_up_after=0)
    r = train_small(tmp_path / "run", cfg, data["train"], data["val"], holdout=data["holdout"])
    steps = [c[0] for c in r["holdout_curve"]]
    assert steps == [3, 6, 9, 12]
    best_step, best_err = min(r["holdout_curve"], key=lambda c: (c[1], c[0]))
    assert (r["best_step"], r["holdout_error"]) == (best_step, best_err)
    model = FourLayerNet("relu", True, 4)
    model.load_state_dict(torch.load(tmp_path / "run" / "best.pt", weights_only=True))
    assert error_rate(model, *data["holdout"]) == pytest.approx(best_err)
    assert r["test_error"] == pytest.approx(error_rate(model, *data["val"]))
    assert [s["step"] for s in r["lrn_statistics"]] == [0, 4, 8, 12]
    assert set(r["lrn_statistics"][0]) == {"step", "lrn1", "lrn2"}
    assert r["lrn_statistics_best"]["lrn1"] == pytest.approx(lrn_statistics(model, data["holdout"][0][:16])["lrn1"])


# --------------------------------------------------------------------------- the experiment


def test_lrn_quick_writes_a_record_with_the_statistic_per_seed(tmp_path: Path, cifar: Path, capsys) -> None:
    from alexnet.experiments.smallnet import _batch

    out = tmp_path / "lrn"
    params = ["steps=8", "batch_size=16", "train_images=0", "test_images=0", "holdout_per_class=5", "eval_every=4",
              "stats_every=4", "lrs=[0.0001, 0.0003]"]
    run_experiment("lrn", budget="quick", out=out, seeds=2, params=params, stores={"cifar10-32": cifar},
                   cache=tmp_path / "cache", threads=1)
    rec = record.load(out / "record.json")
    assert set(rec["arms"]) == {"lrn", "no-lrn"} and rec["seeds"] == [0, 1]
    data = cifar_tensors(next(cifar.parent.glob(".derived-*-160-48-1-s0")), ("train", "val"), scale="raw",
                         holdout_per_class=5)
    for arm, lrn in (("lrn", True), ("no-lrn", False)):
        sweep = rec["sweeps"][arm]
        ok = [p for p in sweep["points"] if not p["diverged"]]
        assert sweep["best"] == min(ok, key=lambda p: (p["holdout_error"], p["lr"]))["lr"]
        for seed, v in rec["arms"][arm]["per_seed"].items():
            run_dir = out / "runs" / f"{arm}-lr{sweep['best']:g}-seed{seed}"
            model = FourLayerNet("relu", lrn, 4)
            model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True))
            assert v["test_error"] == pytest.approx(error_rate(model, *data["val"]))  # raw-scale inputs
            assert v["holdout_error"] == pytest.approx(error_rate(model, *data["holdout"]))
            if lrn:
                torch.manual_seed(int(seed))
                init = FourLayerNet("relu", True, 4)
                cfg = SmallRun(batch_size=16, seed=int(seed), augment=True)
                first = lrn_statistics(init, _batch(*data["train"], 0, cfg)[0])
                assert v["lrn1_mean_init"] == pytest.approx(first["lrn1"]["mean"], rel=1e-5)
                assert v["lrn2_max_init"] == pytest.approx(first["lrn2"]["max"], rel=1e-5)
                assert v["lrn1_mean"] > 1e-2  # raw inputs: the divisor moves (the std scale gave ~1e-4)
            else:
                assert "lrn1_mean" not in v
    table = record.render(rec)
    assert "no LRN" in table and "§3.3: LRN lowers the test error" in table
    assert f"*{CIFAR.lrn_test_error_with:.0%}" in table.replace(".00%", "%")
    assert (out / "lrn.png").is_file()
    before = (out / "record.json").read_text()
    run_experiment("lrn", budget="quick", out=out, seeds=2, params=params, stores={"cifar10-32": cifar},
                   cache=tmp_path / "cache", threads=1)  # every sub-run finished: the same values again
    again = record.load(out / "record.json")
    assert json.dumps(again["arms"], sort_keys=True) == json.dumps(json.loads(before)["arms"], sort_keys=True)
