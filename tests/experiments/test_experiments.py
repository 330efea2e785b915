"""``alexnet experiment``: every experiment's quick path on tiny generated data (seconds each)."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from alexnet.errors import UserError
from alexnet.experiments import REGISTRY, parameters, run_experiment
from alexnet.paper import CIFAR
from helpers import make_store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stores")
    make_store(root / "cifar", train=160, val=48, size=32, classes=4)
    make_store(root / "imagenette", train=48, val=16, size=64, classes=4, seed=1)
    return {"cifar10-32": root / "cifar", "imagenette-256": root / "imagenette"}


def _check(doc: dict, out: Path, capsys, keys: tuple[str, ...]) -> dict:
    assert (out / "results.json").is_file() and (out / "results.md").is_file()
    saved = json.loads((out / "results.json").read_text())
    for key in ("experiment", "budget", "seeds", "runs", "environment", "results", "table", "wall_seconds"):
        assert key in saved, key
    for key in ("torch", "python", "cpu_count", "cpu_model", "gpu", "torch_threads"):
        assert key in saved["environment"], key
    for key in keys:
        assert key in saved["results"], key
    assert saved["runs"] >= 1
    png = out / saved["plot"]
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size < 200_000
    printed = capsys.readouterr().out
    assert saved["table"].splitlines()[0] in printed and "|---" in printed
    return saved


def _run(name, out, stores, params, seeds=None, cache=None):
    return run_experiment(name, budget="quick", out=out, seeds=seeds, params=params, stores=stores,
                          cache=cache or out.parent / "cache", threads=1)


def _errors_from(folder: Path, mode: str) -> tuple[float, float]:
    """Top-1 and top-5 error recomputed from an evaluation's saved probabilities and labels (numpy, by rank)."""
    probs, labels = np.load(folder / f"probs_{mode}.npy"), np.load(folder / "labels.npy")
    rank = (probs > probs[np.arange(len(labels)), labels][:, None]).sum(1)  # classes scored above the label
    return float((rank >= 1).mean()), float((rank >= 5).mean())


def _derived(store: Path) -> Path:
    (path,) = [p for p in store.parent.iterdir() if p.name.startswith(".derived-") and p.name.endswith("-s0")
               and (p / "derived.json").is_file() and p.name.count("-160-") == 2]
    return path


def test_registry_lists_the_experiments():
    assert set(REGISTRY) == {"relu-tanh", "lrn", "ablations", "patches-ensembles", "imagenette", "imagenette-128",
                             "inits", "fashion-mnist", "demo", "retrieval"}
    for name in REGISTRY:
        for budget in ("quick", "full"):
            assert parameters(name, budget)


def test_parameters_reject_unknown_keys_and_types():
    with pytest.raises(UserError, match="unknown key"):
        parameters("lrn", "quick", ["nope=1"])
    with pytest.raises(UserError, match="must be int"):
        parameters("lrn", "quick", ["steps=fast"])
    with pytest.raises(UserError, match="unknown value"):
        parameters("nonesuch", "quick")
    assert parameters("lrn", "quick", ["rate_factor=2"])["rate_factor"] == 2.0


def test_relu_tanh_quick_and_resume(tmp_path, stores, capsys):
    from alexnet.experiments import record

    out = tmp_path / "relu-tanh"
    params = ["max_steps=12", "window=4", "modern_lrs=[0.05]", "paper_lrs=[0.001]", "max_extensions=1",
              "batch_size=16", "train_images=0"]
    doc = _run("relu-tanh", out, stores, params)
    saved = _check(doc, out, capsys, ("arms", "sweeps", "target_train_error"))
    assert saved["results"]["target_train_error"] == CIFAR.relu_tanh_target_train_error
    rec = record.load(out / "record.json")
    for key, sweep in rec["sweeps"].items():
        assert len(sweep["points"]) == 2 and sweep["extensions"] == 1  # one rate, then one below it
        arm, act = key.split("/")
        for seed, values in rec["arms"][key]["per_seed"].items():
            sub = json.loads((out / "runs" / f"{arm}-{act}-lr{sweep['best']:g}-seed{seed}" / "result.json").read_text())
            assert values["iterations_to_target"] == sub["reached_step"] and values["steps"] == sub["steps"]
            assert values["train_images"] == 160 and sub["config"]["init"] == ("cuda-convnet" if arm == "paper"
                                                                               else "default")
    marker = out / "runs" / "modern-relu-lr0.05-seed0" / "result.json"
    before = marker.stat().st_mtime_ns
    _run("relu-tanh", out, stores, params)  # finished sub-runs are skipped
    assert marker.stat().st_mtime_ns == before


def test_small_network_resumes_after_interruption(tmp_path, stores, monkeypatch):
    import torch

    from alexnet.experiments import smallnet
    from alexnet.experiments.smallnet import SmallRun, cifar_tensors, train_small

    data = cifar_tensors(stores["cifar10-32"], ("train",))["train"]
    cfg = SmallRun(lr=0.05, steps=8, batch_size=16, checkpoint_every=4, window=4, threads=1)
    whole = train_small(tmp_path / "whole", cfg, data)
    real_batch = smallnet._batch

    def interrupted(x, y, step, c):
        if step == 6:
            raise KeyboardInterrupt
        return real_batch(x, y, step, c)

    monkeypatch.setattr(smallnet, "_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_small(tmp_path / "cut", cfg, data)
    assert (tmp_path / "cut" / "last.pt").is_file() and not (tmp_path / "cut" / "result.json").exists()
    monkeypatch.setattr(smallnet, "_batch", real_batch)
    resumed = train_small(tmp_path / "cut", cfg, data)
    assert resumed["steps"] == whole["steps"] == 8
    assert not (tmp_path / "cut" / "last.pt").exists()
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_ablations_quick(tmp_path, stores, capsys):
    out = tmp_path / "ablations"
    doc = _run("ablations", out, stores, ["max_steps=2", "batch_size=16", 'variants=["baseline", "pool2", "no-pca"]'])
    saved = _check(doc, out, capsys, ("summary", "runs"))
    summary = saved["results"]["summary"]
    assert set(summary) == {"baseline", "pool2", "no-pca"}
    for r in saved["results"]["runs"]:
        run = out / "runs" / f"{r['variant']}-seed{r['seed']}"
        assert r["status"] == "finished"
        assert (r["test_error"], r["test_top5_error"]) == pytest.approx(_errors_from(run / "eval-val", "centre"))
        assert r["train_error"] == pytest.approx(_errors_from(run / "eval-train_eval", "centre")[0])
    for v in summary:
        tests = [r["test_error"] for r in saved["results"]["runs"] if r["variant"] == v]
        assert summary[v]["test"] == tests
        assert summary[v]["delta_vs_baseline"] == pytest.approx(np.mean(tests) - np.mean(summary["baseline"]["test"]))
    cfg = json.loads((out / "runs" / "pool2-seed0" / "done.json").read_text())["config"]
    assert cfg["model"]["variants"] == ["pool2"] and cfg["run"]["max_steps"] == 2
    # a larger step budget continues the finished sub-runs from their checkpoints instead of restarting
    _run("ablations", out, stores, ["max_steps=4", "batch_size=16", 'variants=["baseline"]'])
    done = json.loads((out / "runs" / "baseline-seed0" / "done.json").read_text())
    assert done["steps"] == 4 and done["resumed"]
    with pytest.raises(UserError, match="unknown ablation"):
        _run("ablations", tmp_path / "bad", stores, ['variants=["wings"]'])


def test_patches_ensembles_quick(tmp_path, stores, capsys):
    out = tmp_path / "pe"
    doc = _run("patches-ensembles", out, stores, ["max_steps=2", "batch_size=16", "ks=[2]"], seeds=2)
    saved = _check(doc, out, capsys, ("singles", "ensembles"))
    assert len(saved["results"]["singles"]) == 2
    assert {"k2_ten", "k2_centre"} <= set(saved["results"]["ensembles"])
    probs = [np.load(out / "runs" / f"net-seed{s}" / "eval-val" / "probs_ten.npy") for s in (0, 1)]
    labels = np.load(out / "runs" / "net-seed0" / "eval-val" / "labels.npy")
    expected = float((np.mean(probs, axis=0).argmax(1) != labels).mean())
    assert saved["results"]["ensembles"]["k2_ten"]["top1"] == pytest.approx(expected)
    for single in saved["results"]["singles"]:
        folder = out / "runs" / f"net-seed{single['seed']}" / "eval-val"
        assert (single["ten_top1"], single["ten_top5"]) == pytest.approx(_errors_from(folder, "ten"))
        assert (single["centre_top1"], single["centre_top5"]) == pytest.approx(_errors_from(folder, "centre"))


def test_imagenette_quick(tmp_path, stores, capsys):
    out = tmp_path / "imagenette"
    doc = _run("imagenette", out, stores, ["max_steps=2", "batch_size=16"])
    saved = _check(doc, out, capsys, ("per_seed", "goal_reached", "kernels"))
    r = saved["results"]["per_seed"][0]
    folder = out / "runs" / "seed0" / "eval-val"
    assert (r["ten_top1_error"], r["ten_top5_error"]) == pytest.approx(_errors_from(folder, "ten"))
    assert (r["centre_top1_error"], r["centre_top5_error"]) == pytest.approx(_errors_from(folder, "centre"))
    assert saved["results"]["goal_reached"] == (1 - r["ten_top1_error"] >= saved["results"]["goal_accuracy"])
    if saved["results"]["kernels"]:
        assert (out / "conv1-kernels-seed0.png").read_bytes()[:8] == PNG_SIGNATURE


def write_idx_pair(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes())


def _fake_fashion(folder: Path) -> None:
    from helpers import quadrant_images

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 160), ("t10k", 48)):
        x, y = quadrant_images(n, 28, 4, rng)
        write_idx_pair(folder, prefix, x[..., 0], y)


def test_idx_reader(tmp_path):
    from alexnet.data.sources.fashion_mnist import load, read_idx

    _fake_fashion(tmp_path)
    x = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    assert x.shape == (160, 28, 28) and x.dtype == np.uint8
    data = load(tmp_path)
    assert data["train"][0].shape == (160, 28, 28, 3) and data["test"][1].shape == (48,)
    assert (data["train"][0][..., 0] == data["train"][0][..., 2]).all()
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\0\0\0\1" * 4))
    with pytest.raises(UserError, match="not an IDX"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        load(tmp_path / "missing")


def test_padded_fashion_store_keeps_the_whole_garment_in_the_centre_patch(tmp_path):
    """docs/fidelity.md, small-input crops: a border of zeros, and the preset's centre patch is the image."""
    from alexnet.config import load_config
    from alexnet.experiments.fashion_mnist import BUDGETS
    from alexnet.data.sources.fashion_mnist import IMAGE_SIDE, load
    from alexnet.paper import DATA

    _fake_fashion(tmp_path)
    pad = BUDGETS["full"]["pad"]
    plain, padded = load(tmp_path)["train"][0], load(tmp_path, pad)["train"][0]
    side, crop = IMAGE_SIDE + 2 * pad, load_config("fashion-mnist", []).data.crop
    assert padded.shape == (len(plain), side, side, 3)
    assert crop == IMAGE_SIDE and crop / side == DATA.crop_size / DATA.image_size  # 28/32 = 224/256
    off = (side - crop) // 2
    assert (padded[:, off:off + crop, off:off + crop] == plain).all()
    border = padded.copy()
    border[:, pad:-pad, pad:-pad] = 0
    assert plain.any() and not border.any()
    with pytest.raises(UserError, match="pad"):
        load(tmp_path, -1)


def test_fashion_mnist_preset_waits_four_epochs_and_the_experiment_runs_the_preset():
    """docs/fidelity.md, Fashion-MNIST schedule: patience 4 (2 divided too early), and the
    experiment's budgets take the network and schedule from the preset instead of restating them."""
    from alexnet.config import load_config
    from alexnet.experiments.fashion_mnist import BUDGETS

    preset = load_config("fashion-mnist", [])
    assert preset.schedule.patience == 4 and preset.schedule.max_epochs == 40
    assert load_config("paper", []).schedule.patience != preset.schedule.patience  # a preset choice, not the default
    for budget in BUDGETS.values():
        assert (budget["width"], budget["patience"], budget["max_epochs"], budget["lr"], budget["batch_size"]) == (
            preset.model.width, preset.schedule.patience, preset.schedule.max_epochs, preset.optim.lr,
            preset.optim.batch_size)


def test_prepare_fashion_mnist_writes_the_preset_store(tmp_path, capsys):
    from alexnet.cli import main
    from alexnet.data.store import Store

    _fake_fashion(tmp_path / "idx")
    assert main(["prepare", "--fashion-mnist", str(tmp_path / "idx"), str(tmp_path / "fm")]) == 0
    store = Store(tmp_path / "fm")
    assert store.image_size == 32 and store.splits() == ["test", "train"] and len(store.split("train")) == 160
    assert main(["prepare", "--fashion-mnist", str(tmp_path / "idx"), str(tmp_path / "fm")]) == 2  # nothing lost
    assert "already exists" in capsys.readouterr().err and Store(tmp_path / "fm").image_size == 32
    assert main(["prepare", "--fashion-mnist", "--size", "31", str(tmp_path / "idx"), str(tmp_path / "x")]) == 2
    assert "even number" in capsys.readouterr().err


def test_fashion_mnist_quick_decides_on_the_holdout_and_reads_the_test_once(tmp_path, capsys):
    from alexnet.data.store import Store
    from alexnet.experiments import record

    idx = tmp_path / "idx"
    _fake_fashion(idx)
    out = tmp_path / "fm"
    doc = run_experiment("fashion-mnist", budget="quick", out=out, seeds=2, params=[
        f'idx_dir="{idx}"', "max_steps=0", "max_epochs=2", "batch_size=16", "train_images=0", "val_images=0",
        "holdout=4"], cache=tmp_path / "cache", threads=1)
    saved = _check(doc, out, capsys, ("per_seed", "goal_reached", "test_accuracy_ten_mean"))
    base = Store(tmp_path / "cache" / "fashion-mnist-32-holdout4")
    assert len(base.split("holdout")) == 16 and len(base.split("train")) == 144  # 4 of each of the 4 classes
    assert sorted(np.bincount(base.split("holdout").labels).tolist()) == [4, 4, 4, 4]
    rec = record.load(out / "record.json")
    assert rec["seeds"] == [0, 1] and set(rec["arms"]["preset"]["per_seed"]) == {"0", "1"}
    for seed, r in rec["arms"]["preset"]["per_seed"].items():
        run = out / "runs" / f"seed{seed}"
        assert r["checkpoint"] == "best.pt" and r["test_images"] == 48
        events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert any(e.get("event") == "decision_split" and e["split"] == "holdout" for e in events)
        assert r["ten_top1_error"] == pytest.approx(_errors_from(run / "eval-val-best", "ten")[0])
        assert r["centre_top1_error"] == pytest.approx(_errors_from(run / "eval-val-best", "centre")[0])
        assert r["holdout_top1_error"] == pytest.approx(_errors_from(run / "eval-holdout-best", "centre")[0])
        assert r["ten_top1_accuracy"] == pytest.approx(1 - r["ten_top1_error"])
        assert not (run / "eval-val").exists()  # the test images are read once, with best.pt
    acc = [r["ten_top1_accuracy"] for r in rec["arms"]["preset"]["per_seed"].values()]
    assert saved["results"]["test_accuracy_ten_mean"] == pytest.approx(np.mean(acc))
    assert "holdout error, centre (decides)" in record.render(rec)


def test_fashion_mnist_seeds_kept_in_a_folder_are_not_trained_again_on_another_machine(tmp_path, capsys):
    """--keep: a seed trained and evaluated is kept as small JSON files (no weights); a run into another OUT
    with the same keep folder trains nothing and reports the same figures; a seed whose done.json is missing
    from the keep folder (a copy interrupted before its last file) trains again; another idx_dir is the same
    experiment, another budget parameter is refused by name."""
    from alexnet.experiments import record

    idx = tmp_path / "idx"
    _fake_fashion(idx)
    params = [f'idx_dir="{idx}"', "max_steps=0", "max_epochs=1", "batch_size=16", "train_images=0",
              "val_images=0", "holdout=4"]
    kept = tmp_path / "kept"
    run_experiment("fashion-mnist", budget="quick", out=tmp_path / "a", seeds=2, params=params,
                   cache=tmp_path / "cache", threads=1, keep=kept)
    first = record.load(tmp_path / "a" / "record.json")["arms"]["preset"]["per_seed"]
    for seed in ("seed0", "seed1"):
        names = sorted(str(f.relative_to(kept / seed)) for f in (kept / seed).rglob("*") if f.is_file())
        assert names == ["done.json", "eval-holdout-best/eval.json", "eval-train_eval-best/eval.json",
                         "eval-val-best/eval.json", "metrics.jsonl"]
    (kept / "seed1" / "done.json").unlink()
    moved = tmp_path / "idx-elsewhere"
    idx.rename(moved)
    capsys.readouterr()
    run_experiment("fashion-mnist", budget="quick", out=tmp_path / "b", seeds=2,
                   params=[f'idx_dir="{moved}"', *params[1:]], cache=tmp_path / "cache", threads=1, keep=kept)
    log = capsys.readouterr().err
    assert "seed0: finished earlier, skipped" in log and "seed1: training" in log
    assert not (tmp_path / "b" / "runs" / "seed0" / "checkpoints").exists()  # nothing trained, no weights
    assert (tmp_path / "b" / "runs" / "seed1" / "checkpoints" / "best.pt").is_file()
    second = record.load(tmp_path / "b" / "record.json")["arms"]["preset"]["per_seed"]
    for key in ("ten_top1_error", "centre_top1_error", "holdout_top1_error", "train_eval_top1_error", "steps",
                "checkpoint", "train_wall_seconds"):
        assert second["0"][key] == first["0"][key]
    assert second["0"]["checkpoint"] == "best.pt" and (kept / "seed1" / "done.json").is_file()
    with pytest.raises(UserError, match=r"keeps sub-runs made with max_epochs=1, this run has max_epochs=2"):
        run_experiment("fashion-mnist", budget="quick", out=tmp_path / "c", seeds=1,
                       params=[*params[:2], "max_epochs=2", *params[3:]], cache=tmp_path / "cache", keep=kept)


def test_a_second_process_waits_for_the_cached_store_another_is_making_and_does_not_make_it_again(tmp_path):
    """Two processes of one experiment (one per arm or seed) asking for the same cached base or derived store:
    the one that finds it being made waits, says so, and then uses the finished store instead of writing it a
    second time over the first one's files.  (Two threads stand in for the processes: each opens the lock file
    itself, and flock locks conflict between open files, not only between processes.)"""
    import fcntl
    import threading

    from alexnet.experiments import common, stores

    messages: list[str] = []
    ctx = common.Context(name="x", out=tmp_path / "out", cache=tmp_path / "cache", log=messages.append)
    made: list[Path] = []
    for name, ask in (("base", lambda: stores.store_for(ctx, "base", made.append)),
                      ("derived", lambda: stores.derived_store(ctx, tmp_path / "cache" / "base", train=8, val=4,
                                                               train_eval=2))):
        path = tmp_path / "cache" / ("base" if name == "base" else "derived/base-8-4-2-s0")
        path.parent.mkdir(parents=True, exist_ok=True)
        got: list[Path] = []
        with open(path.with_name(path.name + ".making"), "a") as held:  # "the other process", making it
            fcntl.flock(held, fcntl.LOCK_EX)
            waiter = threading.Thread(target=lambda: got.append(ask()))
            waiter.start()
            waiter.join(timeout=2.0)
            assert waiter.is_alive() and not got  # blocked while the other one makes it
            if name == "base":
                make_store(path, train=16, val=8, size=8)
            else:  # the other process's finished derived store, marked so that a second writing would show
                path.mkdir(parents=True)
                (path / "derived.json").write_text('{"written by": "the other process"}')
            fcntl.flock(held, fcntl.LOCK_UN)
        waiter.join(timeout=30)
        assert got == [path] and made == []
        if name == "derived":
            assert sorted(f.name for f in path.iterdir()) == ["derived.json"]
            assert json.loads((path / "derived.json").read_text()) == {"written by": "the other process"}
        assert messages[-1] == f"[x] {path}: another process is making it; waiting for it"
    assert not (tmp_path / "cache" / "derived" / "base-8-4-2-s0.tmp").exists()
    # unlocked, a missing store is made, once
    assert stores.store_for(ctx, "fresh", lambda out: (made.append(out), make_store(out, size=8))) == (
        tmp_path / "cache" / "fresh")
    assert made == [tmp_path / "cache" / "fresh"]
    assert stores.store_for(ctx, "fresh", made.append) == tmp_path / "cache" / "fresh" and len(made) == 1


def test_budget_mismatch_and_cli(tmp_path, stores, capsys):
    from alexnet.cli import main

    assert main(["experiment", "--list"]) == 0
    assert "relu-tanh" in capsys.readouterr().out
    out = tmp_path / "lrn"
    code = main(["experiment", "lrn", "--out", str(out), "--store", f"cifar10-32={stores['cifar10-32']}",
                 "--param", "steps=2", "--param", "batch_size=16", "--param", "train_images=0",
                 "--param", "test_images=0", "--cache", str(tmp_path / "cache"), "--quiet", "--threads", "1"])
    assert code == 0
    assert "results:" in capsys.readouterr().out
    assert main(["experiment", "lrn", "--budget", "full", "--out", str(out), "--store",
                 f"cifar10-32={stores['cifar10-32']}"]) == 2
    assert "quick run" in capsys.readouterr().err
    assert main(["experiment", "nonesuch"]) == 2
    assert main(["experiment", "ablations", "--out", str(tmp_path / "k"), "--keep", str(tmp_path / "kept")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--keep: ablations cannot keep its sub-runs in a folder; experiments that can: relu-tanh, lrn, "
        "fashion-mnist")
    (tmp_path / "kept-file").write_text("x")
    assert main(["experiment", "relu-tanh", "--out", str(tmp_path / "k"), "--keep", str(tmp_path / "kept-file")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"--keep: {tmp_path / 'kept-file'}: not a folder")


def _small_train() -> tuple:
    import torch

    return torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)


def test_a_kept_result_that_the_run_refuses_names_the_file_in_the_keep_folder(tmp_path: Path) -> None:
    """A kept result made with another configuration is refused; the error names the keep folder it was restored
    from (removing only the run folder's copy would restore it again), and only when it was restored."""
    from alexnet.experiments import common
    from alexnet.experiments.smallnet import SmallRun, train_small

    ctx = common.Context(name="relu-tanh", out=tmp_path / "out", keep=tmp_path / "kept")
    (tmp_path / "kept" / "sub").mkdir(parents=True)
    (tmp_path / "kept" / "sub" / "result.json").write_text(json.dumps({"config": {"lr": 0.5}, "train_images": 4}))
    copy = ctx.run_dir("sub") / "result.json"
    with pytest.raises(UserError) as refused:
        with common.kept_sub_run(ctx, "sub"):
            train_small(ctx.run_dir("sub"), SmallRun(lr=0.01), _small_train())
    assert str(refused.value) == (f"{copy}: finished with lr=0.5, this run asks for lr=0.01; use another run folder "
                                  f"(restored from {tmp_path / 'kept' / 'sub'}: remove it there too, or use another "
                                  f"--keep folder)")
    # the copy is in the run folder now, so the next attempt restores nothing: the plain message
    with pytest.raises(UserError) as again:
        with common.kept_sub_run(ctx, "sub"):
            train_small(ctx.run_dir("sub"), SmallRun(lr=0.01), _small_train())
    assert str(again.value) == f"{copy}: finished with lr=0.5, this run asks for lr=0.01; use another run folder"


def test_a_sub_run_finished_again_replaces_its_kept_files_and_restoring_never_overwrites(tmp_path: Path) -> None:
    """keep_finished copies a changed file over the kept one (a sub-run trained again: the kept file must be the
    run's last word); restoring never overwrites what the run folder already holds; a failed sub-run keeps
    nothing."""
    from alexnet.experiments import common

    ctx = common.Context(name="lrn", out=tmp_path / "out", keep=tmp_path / "kept")
    run, kept = ctx.run_dir("sub"), tmp_path / "kept" / "sub"

    def finish(text: str, name: str = "result.json") -> None:
        with common.kept_sub_run(ctx, "sub"):
            run.mkdir(parents=True, exist_ok=True)
            (run / name).write_text(text)

    finish('{"a": 1}')
    assert (kept / "result.json").read_text() == '{"a": 1}' and not (kept / "final.json").exists()
    finish('{"a": 2}')  # trained again: the kept copy follows
    assert (kept / "result.json").read_text() == '{"a": 2}'
    finish('{"test_error": 0.1}', "final.json")
    assert (kept / "final.json").read_text() == '{"test_error": 0.1}'
    (kept / "result.json").write_text('{"a": 3}')
    assert common.restore_kept(ctx, "sub") == []  # the run folder has its own: not overwritten
    assert (run / "result.json").read_text() == '{"a": 2}'
    with pytest.raises(RuntimeError):
        with common.kept_sub_run(ctx, "other"):
            ctx.run_dir("other").mkdir(parents=True)
            (ctx.run_dir("other") / "result.json").write_text("{}")
            raise RuntimeError("interrupted")
    assert not (tmp_path / "kept" / "other").exists()
    no_keep = common.Context(name="lrn", out=tmp_path / "bare")  # no --keep: nothing is copied anywhere
    with common.kept_sub_run(no_keep, "sub"):
        pass
    assert not (tmp_path / "bare").exists()
