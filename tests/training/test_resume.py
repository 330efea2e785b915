"""Resuming a run: bit-identical whatever decides, the --resume --set rule, damaged checkpoints, the log, Ctrl-C."""

from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

import numpy as np
import pytest

from alexnet.data.shards import write_store
from alexnet.errors import UserError
from alexnet.inference.trained import TrainedRun, read_checkpoint
from alexnet.locks import FolderLock
from alexnet.training.rundir import load_run_config
from alexnet.training.trainer import train

from helpers import (deterministic_records, one_line_error, quadrant_images, run_cli, same_training_state, start_cli,
                     tiny_config, tiny_sets, wait_for)

#: Three epochs of six steps whose plateau schedule reacts to every error (patience 1): a resume that fed
#: the schedule another number would cut the rate at another epoch.
RECIPE = ["schedule.max_epochs=3", "schedule.patience=1", "schedule.min_improvement=0.02", "run.log_every=2"]


def store_with(path: Path, splits: tuple[str, ...]):
    rng = np.random.default_rng(0)
    data = {"train": quadrant_images(96, 20, 4, rng)}
    for name in splits:
        data[name] = quadrant_images(24, 20, 4, rng)
    return write_store(path, data, [(f"n{i:08d}", f"class {i}") for i in range(4)])


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("splits", [("val",), (), ("holdout",)], ids=["val", "no-val", "holdout"])
def test_resumes_mid_epoch_are_bit_identical_whatever_decides(tmp_path: Path, splits) -> None:
    """Stopped in epoch 1 (step 4) and in epoch 2 (step 9), resumed twice: the same weights, momentum,
    schedule, state and metrics as an uninterrupted run, whether val, holdout or the training error decides."""
    store = store_with(tmp_path / "store", splits)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(tiny_config(store.path, *RECIPE), whole, progress=False)
    train(tiny_config(store.path, *RECIPE, "run.max_steps=4"), parts, progress=False)
    train(load_run_config(parts, ["run.max_steps=9"]), parts, resume=True, progress=False)
    state = train(load_run_config(parts, ["run.max_steps=0"]), parts, resume=True, progress=False)
    assert state.done and state.decision_split == (splits[0] if splits else "train")
    same_training_state(whole, parts)
    steps = [r["step"] for r in records(parts) if r["kind"] == "step"]
    assert steps == sorted(set(steps)), "a step logged twice"
    resumed = [r for r in records(parts) if r.get("event") == "resumed"]
    assert [(r["step"], r["epoch"], r["batch"]) for r in resumed] == [(4, 1, 4), (9, 2, 3)]


def test_the_log_is_trimmed_to_the_checkpoint(tiny_store, tmp_path: Path) -> None:
    """Records written after the last checkpoint (a kill between them) and a line cut short are dropped."""
    whole, run = tmp_path / "whole", tmp_path / "run"
    train(tiny_config(tiny_store.path, *RECIPE), whole, progress=False)
    train(tiny_config(tiny_store.path, *RECIPE, "run.max_steps=5", "run.checkpoint_every=2"), run, progress=False)
    ckpt = run / "checkpoints" / "last.pt"
    ckpt.write_bytes((run / "checkpoints" / "previous.pt").read_bytes())  # as if killed before the step-5 save
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "step", "epoch": 1, "step": 6, "loss": 1.0')  # a kill in the middle of a line
    train(load_run_config(run, ["run.max_steps=0", "run.checkpoint_every=0"]), run, resume=True, progress=False)
    assert deterministic_records(run) == deterministic_records(whole)
    resumed = [r for r in records(run) if r.get("event") == "resumed"]
    assert resumed[0]["step"] == 4


def test_resume_set_applies_the_allowed_keys_and_logs_them(tiny_store, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_store.path, "run.max_steps=3"), run, progress=False)
    train(load_run_config(run, ["optim.lr=0.001", "run.max_steps=0"]), run, resume=True, progress=False)
    history = records(run)
    changed = {r["key"]: (r["old"], r["new"]) for r in history if r.get("event") == "config_changed"}
    assert changed["optim.lr"] == (0.05, 0.001) and changed["run.max_steps"] == (3, 0)
    later = [r for r in history if r["kind"] in ("step", "epoch") and r["step"] > 3]
    assert later and all(r["lr"] == pytest.approx(0.001) for r in later)
    assert read_checkpoint(run)["config"]["optim"]["lr"] == 0.001
    assert 'lr = 0.001' in (run / "config.toml").read_text()
    # a finished run continues when max_epochs is raised, and only then
    state = train(load_run_config(run, ["schedule.max_epochs=2"]), run, resume=True, progress=False)
    assert state.done and state.epoch == 2 and state.step == 12


@pytest.mark.parametrize("override", ["model.width=0.25", "optim.batch_size=32", "run.seed=3", "data.crop=12",
                                      'schedule.kind="fixed"'])
def test_resume_set_refuses_what_was_trained(tiny_store, tmp_path: Path, override: str, capsys) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_store.path, "run.max_steps=2"), run, progress=False)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    key = override.split("=")[0]
    with pytest.raises(UserError, match="cannot change on --resume") as err:
        train(load_run_config(run, [override]), run, resume=True, progress=False)
    assert err.value.key == key
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    from alexnet.cli import main

    assert main(["train", "--resume", str(run), "--set", override]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"--set {key}: cannot change on --resume" in line


def test_a_damaged_last_checkpoint_falls_back_with_a_warning(tiny_store, tmp_path: Path, capsys) -> None:
    whole, run = tmp_path / "whole", tmp_path / "run"
    train(tiny_config(tiny_store.path, *RECIPE), whole, progress=False)
    train(tiny_config(tiny_store.path, *RECIPE, "schedule.max_epochs=2"), run, progress=False)
    ckpts = run / "checkpoints"
    assert {p.name for p in ckpts.iterdir()} == {"last.pt", "previous.pt", "best.pt"}
    (ckpts / "last.pt").write_bytes(b"")  # a zero-byte last.pt
    (ckpts / ".last.pt.tmp-99999").write_bytes(b"half a checkpoint")  # a kill's leftover
    with pytest.raises(UserError, match=r"not a readable checkpoint.*previous.pt"):
        TrainedRun.open(run, device="cpu")  # eval & co name the intact ones
    train(load_run_config(run, ["schedule.max_epochs=3"]), run, resume=True, progress=False)
    assert "warning:" in capsys.readouterr().err
    same_training_state(whole, run)
    assert not list(ckpts.glob(".*tmp*"))
    event = next(r for r in records(run) if r.get("event") == "resumed")
    assert event["checkpoint"] in ("previous.pt", "best.pt") and "last.pt" in event["warning"]
    assert event["removed_temporaries"] == [".last.pt.tmp-99999"]


def test_a_run_stopped_before_its_first_checkpoint_is_taken_by_out_and_by_resume(tiny_store, tmp_path: Path,
                                                                                    capsys) -> None:
    """A half-made run folder: --out reuses it, --resume trains it from the beginning with its config.toml."""
    run, whole = tmp_path / "run", tmp_path / "whole"
    with pytest.raises(UserError, match="loss became"):
        train(tiny_config(tiny_store.path, "optim.lr=1e12"), run, progress=False)
    assert not list((run / "checkpoints").iterdir())
    assert train(tiny_config(tiny_store.path, "run.max_steps=1"), run, progress=False).step == 1
    (run / "checkpoints" / "last.pt").unlink()  # as if killed before the first checkpoint was written
    (run / "model.json").write_text("{}")  # (not a run that never started any more) ...
    with pytest.raises(UserError, match="no checkpoint left"):
        load_run_config(run)
    (run / "model.json").unlink()  # ... but now it is
    train(tiny_config(tiny_store.path), whole, progress=False)
    train(load_run_config(run, ["run.max_steps=0"]), run, resume=True, progress=False)
    assert "training it from the beginning" in capsys.readouterr().err
    same_training_state(whole, run)


def test_a_run_folder_has_one_writer(tiny_store, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_store.path, "run.max_steps=2"), run, progress=False)
    before = (run / "metrics.jsonl").read_bytes()
    with FolderLock(run, "run directory"):  # another process training it
        with pytest.raises(UserError, match=r"in use by another process \(pid \d+"):
            train(load_run_config(run, ["run.max_steps=4"]), run, resume=True, progress=False)
    assert (run / "metrics.jsonl").read_bytes() == before
    assert not (run / ".lock").exists()
    train(load_run_config(run, ["run.max_steps=4"]), run, resume=True, progress=False)


def test_a_relative_store_path_is_recorded_absolute(tiny_store, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tiny_store.path.parent)
    train(tiny_config("store", "run.max_steps=2"), tmp_path / "run", progress=False)
    monkeypatch.chdir(tmp_path / "run")
    config = load_run_config(Path("."), ["run.max_steps=0"])
    assert Path(config.data.store).is_absolute()
    assert train(config, Path("."), resume=True, progress=False).done


def test_a_full_disk_during_a_checkpoint_is_one_line(tiny_store, tmp_path: Path, monkeypatch) -> None:
    import alexnet.training.checkpoint as checkpoint

    run = tmp_path / "run"
    train(tiny_config(tiny_store.path, "run.max_steps=2"), run, progress=False)
    before = (run / "checkpoints" / "last.pt").read_bytes()

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "atomic_write", full)
    with pytest.raises(UserError, match="cannot write checkpoint .*last.pt: the disk is full") as err:
        train(load_run_config(run, ["run.max_steps=4"]), run, resume=True, progress=False)
    assert "\n" not in str(err.value)
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_a_store_changed_under_a_run_is_refused(tmp_path: Path) -> None:
    store = store_with(tmp_path / "store", ("val",))
    run = tmp_path / "run"
    train(tiny_config(store.path, "run.max_steps=2"), run, progress=False)
    rng = np.random.default_rng(5)  # the same path, re-prepared with other images
    write_store(store.path, {"train": quadrant_images(96, 20, 4, rng), "val": quadrant_images(24, 20, 4, rng)},
                [(f"n{i:08d}", f"class {i}") for i in range(4)])
    with pytest.raises(UserError, match="not the store this run was trained on"):
        train(load_run_config(run), run, resume=True, progress=False)


def test_ctrl_c_writes_a_checkpoint_and_the_resume_is_exact(tmp_path: Path) -> None:
    store = store_with(tmp_path / "store", ("val",))
    whole, run = tmp_path / "whole", tmp_path / "run"
    recipe = ["schedule.max_epochs=2", "run.log_every=1"]
    train(tiny_config(store.path, *recipe), whole, progress=False)
    proc = start_cli("train", "--data", store.path, "--out", run, "--quiet", *tiny_sets(*recipe, "data.workers=1"))
    try:
        assert wait_for(lambda: (run / "metrics.jsonl").is_file() and '"kind": "step"' in
                        (run / "metrics.jsonl").read_text())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted at step" in err
    saved = read_checkpoint(run)["state"]["step"]
    interrupted = [r for r in records(run) if r.get("event") == "interrupted"]
    assert interrupted and interrupted[0]["step"] == saved >= 1
    train(load_run_config(run), run, resume=True, progress=False)
    same_training_state(whole, run)


def test_command_line_resume_of_a_zero_byte_checkpoint_is_one_line(tiny_store, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_store.path, "run.max_steps=2"), run, progress=False)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    got = run_cli("train", "--resume", run, "--quiet")
    assert got.returncode == 2
    assert "no checkpoint of" in one_line_error(got.stderr) and "last.pt" in got.stderr


def test_weights_survive_resume_under_a_changed_learning_rate(tiny_store, tmp_path: Path) -> None:
    """What the divergence message recommends: resume with a smaller optim.lr; the optimizer uses it."""
    run = tmp_path / "run"
    train(tiny_config(tiny_store.path, "run.max_steps=2"), run, progress=False)
    train(load_run_config(run, ["optim.lr=1e-9", "run.max_steps=3"]), run, resume=True, progress=False)
    ckpt = read_checkpoint(run)
    assert ckpt["schedule"]["lr"] == pytest.approx(1e-9)
    assert all(g["lr"] <= 1e-8 for g in ckpt["optimizer"]["param_groups"])
