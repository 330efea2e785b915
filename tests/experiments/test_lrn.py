"""Issue 17's LRN experiment: inputs at §2's scale, alpha·sum(a²)/k measured, decisions on a holdout slice,
and the bracketing rate sweep it shares with relu-tanh."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.errors import UserError
from alexnet.experiments import record, run_experiment
from alexnet.experiments.smallnet import FourLayerNet, SmallRun, cifar_tensors, error_rate, lrn_statistics, train_small
from alexnet.experiments.sweep import INTERIOR, bracketing_sweep, next_rate
from alexnet.net.lrn import LocalResponseNorm
from alexnet.paper import CIFAR, LRN_PARAMS
from helpers import make_store, recording_prepared_from_tree


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
    # the holdout is drawn with seed 0 unless told otherwise
    default, seed0, seed1 = (cifar_tensors(cifar, ("train",), scale="raw", holdout_per_class=5, **kw)["holdout"][0]
                             for kw in ({}, {"seed": 0}, {"seed": 1}))
    assert torch.equal(default, seed0) and not torch.equal(default, seed1)
    with pytest.raises(UserError) as err:
        cifar_tensors(cifar, ("train",), scale="pixels")
    assert err.value.key == "param" and err.value.message == "input_scale: unknown value 'pixels'; allowed: raw, std"


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


def test_kept_sub_runs_and_their_test_figures_finish_the_experiment_elsewhere(tmp_path: Path, cifar: Path,
                                                                            monkeypatch) -> None:
    """``--keep``: a new run folder with the kept results trains nothing and writes the same record; a reported
    run kept without its once-read test figures (its weights are not kept) is trained again, to the same values."""
    from alexnet.experiments import lrn

    trained: list[str] = []
    real = lrn.train_small

    def counting(run_dir, *a, **k):
        if not (run_dir / "result.json").is_file():
            trained.append(run_dir.name)
        return real(run_dir, *a, **k)

    monkeypatch.setattr(lrn, "train_small", counting)
    params = ["steps=8", "batch_size=16", "train_images=0", "test_images=0", "holdout_per_class=5", "eval_every=4",
              "stats_every=4", "lrs=[0.0001, 0.0003]", "max_extensions=1"]
    keep = tmp_path / "kept"

    def experiment(out: str) -> dict:
        run_experiment("lrn", budget="quick", out=tmp_path / out, seeds=2, params=params,
                       stores={"cifar10-32": cifar}, cache=tmp_path / "cache", threads=1, keep=keep)
        return record.load(tmp_path / out / "record.json")

    first = experiment("a")
    assert trained and sorted(trained) == sorted(p.name for p in keep.iterdir() if p.is_dir())
    reported = [f"{arm}-lr{first['sweeps'][arm]['best']:g}-seed{s}" for arm in ("lrn", "no-lrn") for s in (0, 1)]
    assert all((keep / sub / "final.json").is_file() for sub in reported)
    assert not (keep / trained[0] / "model.pt").exists()  # weights stay in the run folder
    trained.clear()
    assert experiment("b")["arms"] == first["arms"] and trained == []
    (keep / reported[1] / "final.json").unlink()
    untimed = [{k: v for k, v in seed.items() if k not in ("train_seconds", "seconds_per_step")}
               for doc in (experiment("c"), first) for arm in ("lrn", "no-lrn")
               for seed in doc["arms"][arm]["per_seed"].values()]
    assert untimed[:4] == untimed[4:] and trained == [reported[1]]  # trained again: the same figures
    assert (keep / reported[1] / "final.json").is_file()


# --------------------------------------------------------------------------- the record's numbers, with a fake trainer

#: A fake run's fixed fields (copied into every per-seed entry).
SECONDS_PER_STEP, WALL_SECONDS, TRAILING_EVERY, STEPS_PER_EPOCH = 0.01, 3.0, 2, 5
#: Training images the train error is read on (patched down from 1000 so that it is a strict, seeded slice).
TRAIN_SLICE = 50
#: LRN statistics by hand: three measurements with a best-weights entry (the peak mean in the middle), and four
#: without one (the last training batch stands in; the peak is the second).
STATS_A = [{"step": 0, "lrn1": {"mean": 0.5, "max": 2.0}, "lrn2": {"mean": 0.1, "max": 0.4}},
           {"step": 4, "lrn1": {"mean": 0.9, "max": 3.0}, "lrn2": {"mean": 0.3, "max": 0.8}},
           {"step": 8, "lrn1": {"mean": 0.7, "max": 2.5}, "lrn2": {"mean": 0.2, "max": 0.6}}]
BEST_A = {"lrn1": {"mean": 0.8, "max": 2.8}, "lrn2": {"mean": 0.25, "max": 0.7}}
STATS_B = [{"step": 0, "lrn1": {"mean": 0.4, "max": 1.5}, "lrn2": {"mean": 0.05, "max": 0.2}},
           {"step": 4, "lrn1": {"mean": 1.2, "max": 4.0}, "lrn2": {"mean": 0.3, "max": 0.9}},
           {"step": 8, "lrn1": {"mean": 0.9, "max": 3.5}, "lrn2": {"mean": 0.2, "max": 0.7}},
           {"step": 12, "lrn1": {"mean": 0.6, "max": 2.0}, "lrn2": {"mean": 0.15, "max": 0.5}}]

#: (lrn, rate, seed) -> the fake run: holdout error, diverged, best step, the class its best.pt (None: no best.pt)
#: and model.pt predict for every image, its LRN statistics and best-weights statistics.  Rate factor 2, one
#: extension: with LRN 0.02 beats 0.01 at the top edge, 0.04 diverges (its holdout error, lower, must not count):
#: 0.02 interior.  Without LRN 0.01 is a dead rate (holdout error 1.0, not diverged), 0.04 beats 0.02 and the
#: one extension is spent: 0.04, not bracketed.  Seed 2 without LRN diverges at the chosen rate.
FAKE = {
    (True, 0.01, 0): dict(holdout=0.30, diverged=False, best_step=8, best=3, model=3, stats=STATS_A, stats_best=BEST_A),
    (True, 0.02, 0): dict(holdout=0.20, diverged=False, best_step=4, best=1, model=0, stats=STATS_A, stats_best=BEST_A),
    (True, 0.04, 0): dict(holdout=0.05, diverged=True, best_step=4, best=None, model=0, stats=None, stats_best=None),
    (True, 0.02, 1): dict(holdout=0.25, diverged=False, best_step=12, best=None, model=2, stats=STATS_B,
                          stats_best=None),
    (True, 0.02, 2): dict(holdout=0.15, diverged=False, best_step=8, best=3, model=0, stats=STATS_B, stats_best=BEST_A),
    (False, 0.01, 0): dict(holdout=1.0, diverged=False, best_step=4, best=0, model=0, stats=None, stats_best=None),
    (False, 0.02, 0): dict(holdout=0.40, diverged=False, best_step=4, best=1, model=1, stats=None, stats_best=None),
    (False, 0.04, 0): dict(holdout=0.35, diverged=False, best_step=8, best=2, model=3, stats=None, stats_best=None),
    (False, 0.04, 1): dict(holdout=0.45, diverged=False, best_step=12, best=0, model=1, stats=None, stats_best=None),
    (False, 0.04, 2): dict(holdout=0.50, diverged=True, best_step=4, best=None, model=1, stats=None, stats_best=None),
}
FAKE_PARAMS = ["steps=16", "batch_size=16", "train_images=0", "test_images=0", "holdout_per_class=5", "eval_every=4",
               "stats_every=4", "lrs=[0.01, 0.02]", "rate_factor=2", "max_extensions=1", "give_up_after=7",
               "init=cuda-convnet"]


def constant_net(lrn: bool, size: int, cls: int) -> dict:
    """A four-layer net's weights that predict class ``cls`` for every image (all zero but the fc bias)."""
    net = FourLayerNet("relu", lrn, 4, size)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.fc.bias[cls] = 1.0
    return net.state_dict()


def fake_trainer(calls: list) -> callable:
    """A ``train_small`` stand-in answering from :data:`FAKE` (and writing the weights it names)."""

    def train_small(run_dir, cfg, train, test, log=None, holdout=None):
        calls.append({"run_dir": run_dir, "cfg": cfg, "train": train, "test": test, "log": log, "holdout": holdout})
        f = FAKE[(cfg.lrn, cfg.lr, cfg.seed)]
        run_dir.mkdir(parents=True, exist_ok=True)
        size = train[0].shape[2]
        torch.save(constant_net(cfg.lrn, size, f["model"]), run_dir / "model.pt")
        if f["best"] is not None:
            torch.save(constant_net(cfg.lrn, size, f["best"]), run_dir / "best.pt")
        r = {"steps": cfg.steps, "best_step": f["best_step"], "holdout_error": f["holdout"], "diverged": f["diverged"],
             "wall_seconds": WALL_SECONDS, "seconds_per_step": SECONDS_PER_STEP, "trailing_train_error": [0.9, 0.5],
             "trailing_every": TRAILING_EVERY, "steps_per_epoch": STEPS_PER_EPOCH}
        if f["stats"]:
            r["lrn_statistics"] = f["stats"]
        if f["stats_best"]:
            r["lrn_statistics_best"] = f["stats_best"]
        return r

    return train_small


@pytest.fixture(scope="module")
def faked(tmp_path_factory) -> dict:
    """The experiment run once (3 seeds, 24-pixel images, progress shown) with :data:`FAKE`'s trainer."""
    from alexnet.experiments import lrn, stores

    store = make_store(tmp_path_factory.mktemp("cifar24") / "cifar", train=160, val=48, size=24, classes=4).path
    calls: list = []
    prepared: list = []
    messages: list = []
    prepared_from_tree = recording_prepared_from_tree(prepared)

    root = tmp_path_factory.mktemp("faked")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lrn, "train_small", fake_trainer(calls))
        mp.setattr(lrn, "TRAIN_ERROR_IMAGES", TRAIN_SLICE)
        mp.setattr(stores, "prepared_from_tree", prepared_from_tree)
        doc = run_experiment("lrn", budget="quick", out=root / "out", seeds=3, params=FAKE_PARAMS,
                             stores={"cifar10-32": store}, cache=root / "cache", threads=2, progress=True,
                             log=messages.append)
    return {"doc": doc, "record": record.load(root / "out" / "record.json"), "calls": calls, "prepared": prepared,
            "messages": messages, "log": messages.append, "out": root / "out", "store": store}


def expected_seed(lrn: bool, lr: float, seed: int, *, val: np.ndarray, train: np.ndarray) -> dict:
    """The per-seed entry by hand from :data:`FAKE`: the fake's fields, then (unless diverged) the errors of the
    constant class of best.pt (model.pt without one) on the test split and on the seeded training slice, then
    the statistics."""
    f = FAKE[(lrn, lr, seed)]
    v = {"lr": lr, "steps": 16, "best_step": f["best_step"], "holdout_error": f["holdout"], "diverged": f["diverged"],
         "train_seconds": WALL_SECONDS, "seconds_per_step": SECONDS_PER_STEP}
    if f["diverged"]:
        return v
    cls = f["model"] if f["best"] is None else f["best"]
    rows = np.sort(np.random.default_rng(0).permutation(len(train))[:TRAIN_SLICE])
    v.update(test_error=float(np.mean(val != cls)), test_images=48, train_error=float(np.mean(train[rows] != cls)),
             weights="model.pt" if f["best"] is None else "best.pt")
    if f["stats"]:
        stats, best = f["stats"], f["stats_best"] or f["stats"][-1]
        v["lrn_statistics"] = stats
        for layer in ("lrn1", "lrn2"):
            v.update({f"{layer}_mean_init": stats[0][layer]["mean"], f"{layer}_max_init": stats[0][layer]["max"],
                      f"{layer}_mean": best[layer]["mean"], f"{layer}_max": best[layer]["max"],
                      f"{layer}_mean_peak": max(s[layer]["mean"] for s in stats)})
    return v


def test_each_sub_run_gets_the_budget_the_shared_recipe_and_the_shown_progress(faked: dict) -> None:
    """Every sub-run: the arm's LRN and rate as a float, steps, batch, the paper's weight decay, augmentation,
    the rate dropped at 80%, the experiment's threads, init, eval/stats cadence and give-up; no test split, the
    holdout slice, and the experiment's log (progress shown), each announced; 3 sweep points + 3 seeds per arm."""
    calls = faked["calls"]
    assert len(calls) == 12 and faked["doc"]["runs"] == 12
    for c in calls:
        cfg = c["cfg"]
        assert (cfg.activation, cfg.steps, cfg.batch_size, cfg.weight_decay, cfg.augment, cfg.lr_drop_at,
                cfg.threads, cfg.init, cfg.eval_every, cfg.stats_every, cfg.give_up_after) == (
            "relu", 16, 16, 0.0005, True, 0.8, 2, "cuda-convnet", 4, 4, 7)
        assert type(cfg.lr) is float and c["test"] is None and c["log"] == faked["log"]
        assert len(c["holdout"][1]) == 20 and len(c["train"][1]) == 140
    subs = [f"{'lrn' if c['cfg'].lrn else 'no-lrn'}-lr{c['cfg'].lr:g}-seed{c['cfg'].seed}" for c in calls]
    assert subs == ["lrn-lr0.01-seed0", "lrn-lr0.02-seed0", "lrn-lr0.04-seed0",
                    "lrn-lr0.02-seed0", "lrn-lr0.02-seed1", "lrn-lr0.02-seed2",
                    "no-lrn-lr0.01-seed0", "no-lrn-lr0.02-seed0", "no-lrn-lr0.04-seed0",
                    "no-lrn-lr0.04-seed0", "no-lrn-lr0.04-seed1", "no-lrn-lr0.04-seed2"]
    assert [c["run_dir"] for c in calls] == [faked["out"] / "runs" / s for s in subs]
    assert [m for m in faked["messages"] if m.startswith("[lrn] ")] == [f"[lrn] {s}" for s in subs]
    assert faked["prepared"] == [("cifar10-32", "cifar10", 32, 0)]


def test_a_sub_run_counts_itself_and_passes_no_log_without_progress(tmp_path: Path, monkeypatch) -> None:
    from alexnet.experiments import common, lrn

    calls: list = []
    monkeypatch.setattr(lrn, "train_small", fake_trainer(calls))
    x = torch.zeros(20, 3, 24, 24)
    y = torch.arange(20) % 4
    ctx = common.Context(name="lrn", out=tmp_path, threads=3, log=lambda m: None, progress=False, runs=5)
    params = {"steps": 16, "batch_size": 16, "init": "default", "eval_every": 4, "stats_every": 4, "give_up_after": 7}
    r = lrn._train(ctx, params, {"train": (x, y), "holdout": (x[:8], y[:8])}, True, 0.02, 1)
    assert ctx.runs == 6 and calls[0]["log"] is None and calls[0]["cfg"].threads == 3
    assert (r["sub"], r["lrn"], r["seed"], r["lr"], r["holdout_error"]) == ("lrn-lr0.02-seed1", True, 1, 0.02, 0.25)


def test_the_record_keeps_each_sweep_and_each_seeds_values_at_the_chosen_rate(faked: dict) -> None:
    """Sweeps as :data:`FAKE` gives them (a diverged point has no holdout error; a dead rate at 100% is not a
    divergence), the labels with the chosen rate, and each seed's values worked out in :func:`expected_seed`."""
    from alexnet.experiments.stores import load_arrays

    rec = faked["record"]
    assert rec["sweeps"]["lrn"] == {
        "points": [{"lr": 0.01, "diverged": False, "holdout_error": 0.30},
                   {"lr": 0.02, "diverged": False, "holdout_error": 0.20},
                   {"lr": 0.04, "diverged": True, "holdout_error": None}],
        "best": 0.02, "status": "interior", "extensions": 1, "range": [0.01, 0.04]}
    assert rec["sweeps"]["no-lrn"] == {
        "points": [{"lr": 0.01, "diverged": False, "holdout_error": 1.0},
                   {"lr": 0.02, "diverged": False, "holdout_error": 0.40},
                   {"lr": 0.04, "diverged": False, "holdout_error": 0.35}],
        "best": 0.04, "status": "not bracketed: the best rate 0.04 is the highest tried after 1 extension(s) (the limit)",
        "extensions": 1, "range": [0.01, 0.04]}
    assert {arm: a["label"] for arm, a in rec["arms"].items()} == {"lrn": "with LRN (lr 0.02)",
                                                                  "no-lrn": "without LRN (lr 0.04)"}
    val = load_arrays(faked["store"], "val")[1]
    train = faked["calls"][0]["train"][1].numpy()
    for arm, lrn, lr in (("lrn", True, 0.02), ("no-lrn", False, 0.04)):
        per_seed = rec["arms"][arm]["per_seed"]
        assert list(per_seed) == ["0", "1", "2"]
        for seed in range(3):
            expected = expected_seed(lrn, lr, seed, val=val, train=train)
            assert per_seed[str(seed)] == expected, (arm, seed)
    # by hand: seed 0 with LRN reads STATS_A and BEST_A, seed 1 STATS_B and its last entry (no best weights)
    s0, s1 = rec["arms"]["lrn"]["per_seed"]["0"], rec["arms"]["lrn"]["per_seed"]["1"]
    assert (s0["lrn1_mean_init"], s0["lrn1_mean"], s0["lrn2_max"], s0["lrn1_mean_peak"]) == (0.5, 0.8, 0.7, 0.9)
    assert (s1["lrn1_mean"], s1["lrn1_max"], s1["lrn2_mean_peak"], s1["lrn2_max_init"]) == (0.6, 2.0, 0.3, 0.2)


def test_the_test_split_is_read_once_into_final_json(faked: dict) -> None:
    """Each reported, not diverged run caches its measurements in ``final.json`` (indented); a diverged one has none."""
    runs = faked["out"] / "runs"
    per_seed = faked["record"]["arms"]["lrn"]["per_seed"]
    for seed, weights in ((0, "best.pt"), (1, "model.pt"), (2, "best.pt")):
        text = (runs / f"lrn-lr0.02-seed{seed}" / "final.json").read_text()
        measured = json.loads(text)
        assert text == json.dumps(measured, indent=2)
        assert set(measured) == {"test_error", "test_images", "train_error", "weights"}
        assert measured["weights"] == weights and measured["test_images"] == 48
        assert measured["test_error"] == per_seed[str(seed)]["test_error"]
    assert not (runs / "no-lrn-lr0.04-seed2" / "final.json").exists()
    assert not (runs / "lrn-lr0.01-seed0" / "final.json").exists()  # a sweep point never reads the test split


def test_the_record_names_its_columns_verdict_and_notes(faked: dict) -> None:
    rec = faked["record"]
    stat = "α·Σa²/k"
    columns = [{"metric": "test_error", "label": "test error", "format": "pct"},
               {"metric": "holdout_error", "label": "holdout error (decides)", "format": "pct"},
               {"metric": "train_error", "label": f"train error ({TRAIN_SLICE} imgs)", "format": "pct"}]
    for layer in ("lrn1", "lrn2"):
        columns += [{"metric": f"{layer}_mean_init", "label": f"{stat} {layer}, mean at init", "format": "num",
                     "missing": "no LRN"},
                    {"metric": f"{layer}_mean", "label": f"{stat} {layer}, mean, best weights", "format": "num",
                     "missing": "no LRN"},
                    {"metric": f"{layer}_max", "label": f"{stat} {layer}, max, best weights", "format": "num",
                     "missing": "no LRN"}]
    assert rec["table"]["columns"] == columns
    assert rec["table"]["rows"] == ["lrn", "no-lrn"]
    assert rec["name"] == "lrn" and rec["seeds"] == [0, 1, 2]
    assert rec["verdicts"] == [{"claim": "§3.3: LRN lowers the test error", "a": "lrn", "b": "no-lrn",
                                "metric": "test_error"}]
    notes = rec["notes"]
    assert notes[0].startswith("Budget `quick`: {") and "'rate_factor': 2.0" in notes[0]
    assert notes[1:] == [
        "Images: 140 to train, 20 holdout (decides the rate and the stopping point), 48 test (read once per "
        "reported run).",
        "Inputs: raw (0-255 pixel values minus the mean image, as §2).",
        "LRN: k = 2, n = 5, α = 0.0001 multiplying the sum as printed in §3.3, β = 0.75; the divisor is "
        "k^β·(1 + α·Σa²/k)^β, so α·Σa²/k ≪ 1 means the LRN only rescales its input.",
        "Rate sweep, lrn: 0.01 → 30.00%, 0.02 → 20.00%, 0.04 → diverged (holdout error, seed 0); chosen 0.02: "
        "interior.",
        "Rate sweep, no-lrn: 0.01 → 100.00%, 0.02 → 40.00%, 0.04 → 35.00% (holdout error, seed 0); chosen 0.04: "
        "not bracketed: the best rate 0.04 is the highest tried after 1 extension(s) (the limit)."]


def test_the_results_file_holds_the_seeds_values_sweeps_params_paper_table_plot_and_notes(faked: dict) -> None:
    doc, rec, out = faked["doc"], faked["record"], faked["out"]
    assert doc["seeds"] == [0, 1, 2]
    assert json.loads((out / "experiment.json").read_text())["seeds"] == [0, 1, 2]
    assert json.loads((out / "results.json").read_text())["seeds"] == [0, 1, 2]
    assert doc["results"]["per_arm"] == {arm: a["per_seed"] for arm, a in rec["arms"].items()}
    assert doc["results"]["sweeps"] == rec["sweeps"]
    assert doc["results"]["params"]["rate_factor"] == 2.0 and doc["results"]["params"]["lrs"] == [0.01, 0.02]
    assert doc["paper"] == {"lrn_test_error_with": CIFAR.lrn_test_error_with,
                            "lrn_test_error_without": CIFAR.lrn_test_error_without}
    assert doc["notes"] == rec["notes"] and len(doc["notes"]) == 6
    assert doc["plot"] == "lrn.png" and (out / "lrn.png").is_file()
    assert isinstance(doc["table"], str) and "with LRN (lr 0.02)" in doc["table"] and "no LRN" in doc["table"]


def test_one_process_per_arm_shares_a_keep_folder_and_a_run_of_both_trains_nothing(tmp_path: Path,
                                                                                  faked: dict) -> None:
    """``arms=no-lrn`` and ``arms=lrn`` (two sessions, or two cores) train only their own arm's sub-runs into one
    ``--keep`` folder, each writing a record of its arm without a verdict (which needs both); a run of both arms in
    a third folder then trains nothing and writes the record the one-process run wrote (:func:`faked`)."""
    from alexnet.experiments import lrn, stores

    calls: list = []
    keep = tmp_path / "kept"
    fake = fake_trainer([])

    def keeping(run_dir, cfg, *a, **k):  # as train_small: a finished sub-run (result.json) is read, not trained
        if (run_dir / "result.json").is_file():
            return json.loads((run_dir / "result.json").read_text())
        calls.append({"run_dir": run_dir, "cfg": cfg})
        r = fake(run_dir, cfg, *a, **k)
        (run_dir / "result.json").write_text(json.dumps(r))
        return r

    def experiment(out: str, *arms: str) -> dict:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(lrn, "train_small", keeping)
            mp.setattr(lrn, "TRAIN_ERROR_IMAGES", TRAIN_SLICE)
            mp.setattr(stores, "prepared_from_tree", recording_prepared_from_tree([]))
            run_experiment("lrn", budget="quick", out=tmp_path / out, seeds=3,
                           params=[*FAKE_PARAMS, *(f'arms="{a}"' for a in arms)], stores={"cifar10-32": faked["store"]},
                           cache=tmp_path / "cache", threads=2, keep=keep)
        return record.load(tmp_path / out / "record.json")

    for arm, other in (("no-lrn", "lrn"), ("lrn", "no-lrn")):
        calls.clear()
        one = experiment(arm, arm)
        assert len(calls) == 5 and {c["cfg"].lrn for c in calls} == {arm == "lrn"}  # 3 sweep points, seeds 1 and 2
        assert list(one["arms"]) == [arm] and one["table"]["rows"] == [arm] and one["verdicts"] == []
        assert one["arms"][arm] == faked["record"]["arms"][arm] and other not in one["sweeps"]
    calls.clear()
    both = experiment("both")
    assert calls == []
    assert both["arms"] == faked["record"]["arms"] and both["sweeps"] == faked["record"]["sweeps"]
    assert both["verdicts"] == faked["record"]["verdicts"] != []
    with pytest.raises(UserError, match=r"^param: arms: unknown arm 'none'; allowed: lrn, no-lrn$"):
        experiment("bad", "none")


# --------------------------------------------------------------------------- the figure


def plot_run(lrn: bool, seed: int, curve: list[float], stats: list[dict] | None = None) -> dict:
    """What :func:`lrn._plot` reads of one sub-run: its curve every 2 steps, 5 steps an epoch, its statistics."""
    r = {"lrn": lrn, "seed": seed, "trailing_train_error": curve, "trailing_every": TRAILING_EVERY,
         "steps_per_epoch": STEPS_PER_EPOCH}
    if stats is not None:
        r["lrn_statistics"] = stats
    return r


def test_the_plot_draws_curves_test_errors_against_the_paper_and_the_statistic(tmp_path: Path, monkeypatch) -> None:
    """Drawn under a style whose colour cycle is all black, so every colour seen is one ``_plot`` chose (LRN blue,
    no LRN orange).  Left: each seed's trailing error against epochs ((i * 2 + 1) / 5 = 0.2, 0.6, 1.0), solid with
    LRN and dashed without, labelled by arm and seed.  Middle: each seed's test error at x = 0 (LRN) or 1 (a
    diverged seed has none), and the paper's 11% with LRN and 13% without (§3.3) as grey stars 0.15 to the left,
    one "paper" legend entry.  Right: each LRN run's mean statistic of lrn1 (solid) and lrn2 (dotted) against
    steps (STATS_A and STATS_B, by hand), on a log scale."""
    import matplotlib
    from cycler import cycler
    from matplotlib.colors import to_hex
    from matplotlib.markers import MarkerStyle

    from alexnet.experiments import lrn, plotting

    figures = []
    save = plotting.save_figure
    monkeypatch.setattr(plotting, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    runs = {"lrn": [plot_run(True, 0, [0.9, 0.6, 0.4], STATS_A), plot_run(True, 1, [0.85, 0.5, 0.3], STATS_B)],
            "no-lrn": [plot_run(False, 0, [0.95, 0.7, 0.5]), plot_run(False, 1, [0.8, 0.65, 0.45])]}
    per_arm = {"lrn": {"0": {"test_error": 0.3}, "1": {"test_error": 0.35}},
               "no-lrn": {"0": {"test_error": 0.4}, "1": {"diverged": True}}}
    with matplotlib.rc_context({"axes.prop_cycle": cycler(color=["black"])}):
        path = lrn._plot(tmp_path / "lrn.png", runs, per_arm)
    assert path == tmp_path / "lrn.png" and path.is_file()
    (fig,) = figures
    a, b, c = fig.axes
    blue, orange, grey = to_hex("tab:blue"), to_hex("tab:orange"), to_hex("grey")
    assert fig.get_suptitle() == "§3.3 on CIFAR-10: four-layer CNN with / without LRN"

    assert (a.get_xlabel(), a.get_ylabel()) == ("epochs", "training error (trailing mean)")
    expected = [([0.9, 0.6, 0.4], "-", blue, "with LRN seed 0"), ([0.85, 0.5, 0.3], "-", blue, "with LRN seed 1"),
                ([0.95, 0.7, 0.5], "--", orange, "without LRN seed 0"),
                ([0.8, 0.65, 0.45], "--", orange, "without LRN seed 1")]
    assert len(a.lines) == 4
    for line, (curve, style, colour, label) in zip(a.lines, expected):
        assert np.allclose(line.get_xdata(), [0.2, 0.6, 1.0]) and list(line.get_ydata()) == curve
        assert (line.get_linestyle(), to_hex(line.get_color()), line.get_label()) == (style, colour, label)
    assert [t.get_text() for t in a.get_legend().get_texts()] == [e[3] for e in expected]

    assert b.get_ylabel() == "test error" and list(b.get_xticks()) == [0, 1]
    assert [t.get_text() for t in b.get_xticklabels()] == ["with LRN", "without LRN"]
    points = [(coll.get_offsets().tolist(), to_hex(coll.get_facecolor()[0])) for coll in b.collections]
    assert points == [([[0, 0.3], [0, 0.35]], blue), ([[-0.15, 0.11]], grey),
                      ([[1, 0.4]], orange), ([[0.85, 0.13]], grey)]
    star = MarkerStyle("*")
    star_path = star.get_path().transformed(star.get_transform()).vertices
    for coll in b.collections[1::2]:
        assert np.allclose(coll.get_paths()[0].vertices, star_path)
    assert [t.get_text() for t in b.get_legend().get_texts()] == ["paper"]

    assert (c.get_xlabel(), c.get_ylabel(), c.get_yscale()) == ("step", "mean α·Σa²/k (training batch)", "log")
    expected = [([0, 4, 8], [0.5, 0.9, 0.7], "-", "lrn1 seed 0"), ([0, 4, 8], [0.1, 0.3, 0.2], ":", "lrn2 seed 0"),
                ([0, 4, 8, 12], [0.4, 1.2, 0.9, 0.6], "-", "lrn1 seed 1"),
                ([0, 4, 8, 12], [0.05, 0.3, 0.2, 0.15], ":", "lrn2 seed 1")]
    assert len(c.lines) == 4
    for line, (steps, means, style, label) in zip(c.lines, expected):
        assert list(line.get_xdata()) == steps and list(line.get_ydata()) == means
        assert (line.get_linestyle(), to_hex(line.get_color()), line.get_label()) == (style, blue, label)
    assert [t.get_text() for t in c.get_legend().get_texts()] == [e[3] for e in expected]


def test_the_record_asks_its_question_names_the_std_scale_and_the_papers_rows(tmp_path: Path) -> None:
    """``_record`` called directly at the ``std`` input scale: the question word for word, the inputs
    note for ``std``, and the paper's two reference rows, 11% with LRN and 13% without (§3.3, transcribed by hand);
    the sweep note reads seeds[0] (here 3) and 100 x the holdout error."""
    from alexnet.experiments import common, lrn

    ctx = common.Context(name="lrn", out=tmp_path, budget="full", threads=1)
    sweep = {"points": [{"lr": 0.003, "diverged": False, "holdout_error": 0.25}], "best": 0.003, "status": "interior"}
    data = {"train": (None, [0] * 6), "holdout": (None, [0] * 2), "val": (None, [0] * 4)}
    rec = lrn._record(ctx, [3, 4], {"input_scale": "std"}, {"lrn": {}, "no-lrn": {}},
                      {"lrn": sweep, "no-lrn": sweep}, data)
    assert rec["question"] == ("Does the paper's LRN (§3.3) lower the four-layer network's CIFAR-10 test error when "
                               "the activations are at the scale its constants were chosen for, and does its divisor "
                               "move?")
    assert rec["table"]["reference"] == [{"label": "paper, with LRN", "values": {"test_error": 0.11}},
                                         {"label": "paper, without LRN", "values": {"test_error": 0.13}}]
    assert rec["notes"][1:3] == [
        "Images: 6 to train, 2 holdout (decides the rate and the stopping point), 4 test (read once per reported run).",
        "Inputs: std (mean image subtracted, divided by the global standard deviation)."]
    assert rec["notes"][4] == "Rate sweep, lrn: 0.003 → 25.00% (holdout error, seed 3); chosen 0.003: interior."
