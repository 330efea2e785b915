"""Training runs: run directory, exact resume, atomic checkpoints, health checks, schedule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from alexnet.inference.trained import TrainedRun, read_checkpoint
from alexnet.errors import UserError
from alexnet.inference.scoring import topk_errors
from alexnet.training.health import HealthError, HealthMonitor
from alexnet.training.rundir import load_run_config
from alexnet.training.trainer import train

from helpers import tiny_config as _tiny_config


def tiny_config(store, *extra: str):
    """The tiny recipe over two epochs (resume and schedule tests need an epoch boundary)."""
    return _tiny_config(store, "schedule.max_epochs=2", *extra)

def weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "checkpoints" / "last.pt")["model"]


def test_run_directory_contents(tiny_store, tmp_path: Path) -> None:
    run = tmp_path / "run"
    state = train(tiny_config(tiny_store.path), run, progress=False)
    assert state.done and state.epoch == 2 and state.step == 2 * (96 // 16)
    for name in ("config.toml", "run.json", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
                 "model.safetensors", "model.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    info = json.loads((run / "run.json").read_text())
    assert info["reading"] == "paper" and info["seed"] == 0 and "torch" in info["versions"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 2 and {"val_top1_error", "val_top5_error", "train_loss", "lr"} <= set(epochs[0])
    model = TrainedRun.open(run, device='cpu').model
    assert model.spec.num_classes == 4


def test_resume_is_bit_identical(tiny_store, tmp_path: Path) -> None:
    """Stop after 5 steps (mid-epoch), resume, and end with the same weights as an uninterrupted run."""
    whole = tmp_path / "whole"
    train(tiny_config(tiny_store.path), whole, progress=False)
    parts = tmp_path / "parts"
    state = train(tiny_config(tiny_store.path, "run.max_steps=5"), parts, progress=False)
    assert not state.done and state.step == 5 and state.batch == 5
    config = load_run_config(parts, ["run.max_steps=0"])
    state = train(config, parts, resume=True, progress=False)
    assert state.done
    a, b = weights(whole), weights(parts)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    va = read_checkpoint(whole / "checkpoints" / "last.pt")["optimizer"]
    vb = read_checkpoint(parts / "checkpoints" / "last.pt")["optimizer"]
    for k in va["state"]:
        assert torch.equal(va["state"][k]["velocity"], vb["state"][k]["velocity"])


def test_periodic_checkpoints_and_atomicity(tiny_store, tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_store.path, "run.checkpoint_every=2", "run.max_steps=4"), run, progress=False)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    assert read_checkpoint(run)["state"]["step"] == 4

    def dying_save(obj, f, *a, **k):  # a kill in the middle of writing
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(load_run_config(run, ["run.max_steps=6"]), run, resume=True, progress=False)
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temporary left


def test_existing_run_directory_is_not_overwritten(tiny_store, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_store.path, "run.max_steps=1"), run, progress=False)
    with pytest.raises(UserError, match="already exists.*--resume"):
        train(tiny_config(tiny_store.path), run, progress=False)


def test_diverging_loss_stops_with_a_message(tiny_store, tmp_path: Path) -> None:
    with pytest.raises(HealthError, match="loss became (nan|inf)"):
        train(tiny_config(tiny_store.path, "optim.lr=1e12"), tmp_path / "run", progress=False)


def test_loss_stuck_at_chance_is_detected(tiny_store, tmp_path: Path) -> None:
    with pytest.raises(HealthError, match=r"stayed at ln\(4\)"):
        train(tiny_config(tiny_store.path, "optim.lr=1e-9", "run.health_window=4"), tmp_path / "run", progress=False)


def test_health_monitor_window() -> None:
    m = HealthMonitor(num_classes=1000, window=3)
    chance = math.log(1000)
    for step, factor in enumerate([1.0, 1.01, 0.90, 1.0, 1.0], start=1):
        m.observe(chance * factor, step)  # a window holding the 0.90 step has moved 3%: no alarm
    with pytest.raises(HealthError, match=r"ln\(1000\) = 6.908 for 3 steps"):
        m.observe(chance, 6)
    with pytest.raises(HealthError, match="loss became nan"):
        HealthMonitor(num_classes=10, window=0).observe(float("nan"), 1)


def test_topk_errors() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 0])
    assert topk_errors(logits, labels, (1, 2)) == [2, 1]


def test_bad_store_and_bad_config_are_user_errors(tiny_store, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        train(tiny_config(tmp_path / "nowhere"), tmp_path / "r1", progress=False)
    with pytest.raises(UserError, match="num_classes: is 7 but store"):
        train(tiny_config(tiny_store.path, "model.num_classes=7"), tmp_path / "r2", progress=False)
    with pytest.raises(UserError, match="data.crop: 99 is larger"):
        train(tiny_config(tiny_store.path, "data.crop=99"), tmp_path / "r3", progress=False)
    # a preset for much smaller images on this 20-px store (prepared for 16-px crops): by hand, 8 * 256/224 = 9.1
    with pytest.raises(UserError, match="data.crop: 8 is less than half the store's 20x20 images: prepare the "
                                        "store with --size 9"):
        train(tiny_config(tiny_store.path, "data.crop=8"), tmp_path / "r5", progress=False)
    assert not (tmp_path / "r5").exists() and not (tmp_path / "r3").exists()
    with pytest.raises(UserError, match="variant: unknown value"):
        train(tiny_config(tiny_store.path, "model.variants=wide"), tmp_path / "r4", progress=False)


def test_augmenting_on_the_device_trains_the_same_network(tiny_store, tmp_path: Path) -> None:
    """data.augment_device = "device" (the GPU path: raw uint8 batches, whole-batch augmentation in the
    training process) uses the same draws as the workers' path, so on the CPU the runs are identical."""
    a, b = tmp_path / "workers", tmp_path / "device"
    train(tiny_config(tiny_store.path, "run.max_steps=3"), a, progress=False)
    train(tiny_config(tiny_store.path, "run.max_steps=3", 'data.augment_device="device"'), b, progress=False)
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resuming_at_the_step_budget_takes_no_step(tiny_store, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_store.path, "run.max_steps=3"), run, progress=False)
    before = weights(run)
    state = train(load_run_config(run), run, resume=True, progress=False)
    assert state.step == 3
    after = weights(run)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow  # inductor compiles the network's C++ kernels first: about a minute on 2 cores
def test_compiled_network_trains_like_the_eager_one(tiny_store, tmp_path: Path) -> None:
    """run.compile wraps the network in torch.compile; checkpoints still hold the plain module's weights."""
    a, b = tmp_path / "eager", tmp_path / "compiled"
    train(tiny_config(tiny_store.path, "run.max_steps=3"), a, progress=False)
    train(tiny_config(tiny_store.path, "run.max_steps=3", "run.compile=true"), b, progress=False)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-3, atol=1e-5) for k in wa)


def test_resume_after_schedule_decisions_continues_the_schedule(tiny_store, tmp_path: Path) -> None:
    """Resume in the third epoch, after two plateau decisions (one reduction): same rates, weights and state."""
    plateau = ["schedule.max_epochs=3", "schedule.patience=1", "schedule.min_improvement=1.0"]  # 2 and 3 reduce
    whole = tmp_path / "whole"
    train(tiny_config(tiny_store.path, *plateau), whole, progress=False)
    parts = tmp_path / "parts"
    state = train(tiny_config(tiny_store.path, *plateau, "run.max_steps=15"), parts, progress=False)
    assert state.epoch == 2 and state.batch == 3
    train(load_run_config(parts, ["run.max_steps=0"]), parts, resume=True, progress=False)
    a, b = read_checkpoint(whole / "checkpoints" / "last.pt"), read_checkpoint(parts / "checkpoints" / "last.pt")
    assert a["schedule"] == b["schedule"] and b["schedule"]["reductions"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key

    def rates(run: Path) -> list[float]:
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["lr"] for r in lines if r["kind"] == "epoch"]

    assert rates(whole) == rates(parts) == pytest.approx([0.05, 0.05, 0.005])  # optim.lr=0.05 (helpers)


def test_the_run_says_which_split_drives_the_schedule(tmp_path: Path) -> None:
    """docs/fidelity.md, plateau rule: §5 decides on the validation error; without one the run says so."""
    import numpy as np

    from alexnet.data.shards import write_store
    from helpers import make_store, quadrant_images

    def decided(splits: tuple[str, ...], name: str) -> str:
        if splits == ("train", "val"):
            store = make_store(tmp_path / f"store-{name}")
        else:
            rng = np.random.default_rng(0)
            store = write_store(tmp_path / f"store-{name}", {s: quadrant_images(48, 20, 4, rng) for s in splits},
                                [(f"n{i:08d}", f"class {i}") for i in range(4)])
        run = tmp_path / name
        train(tiny_config(store.path, "run.max_steps=1"), run, progress=False)
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        (event,) = [r for r in lines if r.get("event") == "decision_split"]
        return event["split"], event["warning"]

    assert decided(("train", "holdout", "val"), "with-holdout") == ("holdout", "")
    split, warning = decided(("train", "val"), "with-val")
    assert split == "val" and "prepare the store with --holdout N" in warning
    assert decided(("train", "test"), "test-only")[0] == "test"
    split, warning = decided(("train",), "no-val")
    assert split == "train" and "the training error decides" in warning


def test_code2012_hand_events_during_a_run(tmp_path: Path, monkeypatch) -> None:
    """The code2012 schedule's hand events reach the run: rates, frozen conv1, colour noise, and again on resume."""
    from alexnet.config import load_config
    from alexnet.training import schedule as schedule_module
    from alexnet.training.schedule import HandEvent
    from alexnet.training.trainer import Trainer
    from helpers import TINY_RECIPE, make_store

    monkeypatch.setattr(schedule_module, "CODE2012_EVENTS", (
        HandEvent(1, "weight_lr", "conv1", 0.1), HandEvent(1, "colour_noise_off"), HandEvent(2, "freeze", "conv1")))
    store = make_store(tmp_path / "store")
    config = load_config("code2012", [f'data.store="{store.path}"', *TINY_RECIPE, "run.max_steps=12"])
    run = tmp_path / "run"
    first = Trainer(config, run, progress=False)
    assert first.augment.pca
    first.fit()
    assert not first.augment.pca  # off after epoch 1
    rates = {g["name"]: g["lr"] for g in first.optimizer.param_groups}
    assert rates["conv1.weight"] == rates["conv1.bias"] == 0  # frozen after epoch 2
    assert rates["conv2.weight"] == 0.05 and rates["conv2.bias"] == 0.1  # optim.lr 0.05, biases x2
    conv1_then = read_checkpoint(run / "checkpoints" / "last.pt")["model"]
    resumed = Trainer(load_run_config(run, ["run.max_steps=18"]), run, resume=True, progress=False)
    assert not resumed.augment.pca and {g["name"]: g["lr"] for g in resumed.optimizer.param_groups} == rates
    resumed.fit()
    now = read_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert torch.equal(now["conv1.weight"], conv1_then["conv1.weight"])
    assert torch.equal(now["conv1.bias"], conv1_then["conv1.bias"])
    assert not torch.equal(now["conv2.weight"], conv1_then["conv2.weight"])
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    said = [(r["epoch"], r["what"]) for r in lines if r.get("event") == "hand_event"]
    assert said == [(1, "after epoch 1: conv1 weights' rate x 0.1"), (1, "after epoch 1: colour noise off"),
                    (2, "after epoch 2: conv1 frozen")]


def test_the_holdout_error_not_the_training_error_picks_best_pt(tmp_path: Path) -> None:
    """With a holdout split, the decision error (best.pt, the plateau schedule) is the holdout's centre-patch
    top-1 error of each epoch, not the training error logged beside it."""
    import numpy as np

    from alexnet.data.shards import write_store
    from helpers import quadrant_images

    rng = np.random.default_rng(1)
    store = write_store(tmp_path / "store", {s: quadrant_images(n, 20, 4, rng)
                                             for s, n in (("train", 64), ("holdout", 24), ("val", 24))},
                        [(f"n{i:08d}", f"class {i}") for i in range(4)])
    state = train(tiny_config(store.path, "schedule.max_epochs=4"), tmp_path / "run", progress=False)
    epochs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in epochs if e.get("kind") == "epoch"]
    assert len(epochs) == 4 and {e["val_split"] for e in epochs} == {"holdout"}
    held = [e["val_top1_error"] for e in epochs]
    assert min(held) != min(e["train_top1_error"] for e in epochs)  # the two would pick differently
    assert state.best_top1 == min(held)


def test_warm_up_and_the_health_factor_reach_the_optimizer(tiny_store, tmp_path: Path) -> None:
    """The step after k completed steps runs at (k + 1) / warmup_steps of the rate (never at 0), full from then
    on; a health roll-back's factor multiplies the rate the optimizer uses, not only the one reported."""
    from alexnet.training.trainer import Trainer

    trainer = Trainer(tiny_config(tiny_store.path, "schedule.warmup_steps=4"), tmp_path / "run", progress=False)
    try:
        base = trainer.schedule.current_lr
        for step, fraction in ((0, 0.25), (1, 0.5), (3, 1.0), (4, 1.0), (9, 1.0)):
            trainer.state.step = step
            trainer._apply_lr()
            assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx(
                [base * fraction] * len(trainer.optimizer.param_groups)), step
        trainer.state.lr_factor = 0.5
        trainer._apply_lr()
        assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx(
            [base * 0.5] * len(trainer.optimizer.param_groups))
        assert trainer.lr == pytest.approx(base * 0.5)
    finally:
        trainer.lock.release()
