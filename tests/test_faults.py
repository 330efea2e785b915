"""Fault injection, as a user meets faults: bad values and paths, kill -9 and resume, two writers, a full disk.

Every failure must be one line on stderr and a non-zero exit status, never a traceback, and lose nothing
that was finished; a run or store resumed after kill -9 must equal, byte for byte, one never interrupted.
The sweeps over many kill moments are marked slow (``make test-slow``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.data.store import MARKER, Store, verify_store
from alexnet.errors import UserError
from alexnet.training.rundir import load_run_config
from alexnet.training.trainer import train

from helpers import (deterministic_records, make_checkpoint, one_line_error, run_cli, same_training_state, start_cli,
                     tiny_config, tiny_run, tiny_sets, wait_for)


def cli_error(capsys, argv: list[str]) -> str:
    """Run ``alexnet ARGV`` in this process; its one error line (asserting exit status 2)."""
    assert main([str(a) for a in argv]) == 2
    return one_line_error(capsys.readouterr().err)


# --------------------------------------------------------------------------- bad values and paths


BAD_VALUES = [
    "optim.batch_size=0", "optim.batch_size=-8", "data.workers=-1", "run.threads=-1", 'data.mean="foo"',
    "optim.lr=0", "optim.lr=-0.1", "optim.lr=nan", "optim.momentum=1.5", "optim.weight_decay=-1",
    "schedule.max_epochs=0", "schedule.patience=0", "schedule.divisor=1", "schedule.max_reductions=-1",
    'schedule.kind="cosine"', "schedule.drop_epochs=[3, 2]", 'run.device="gpu"', 'run.amp="fp16"',
    'model.reading="1998"', 'model.init="xavier"', "model.width=0", "model.fc_units=0", "data.crop=0",
    'data.augment_device="tpu"', 'data.verify="never"', "run.log_every=0", "run.rollback_lr_factor=2",
    "run.checkpoint_every=-1", "run.max_steps=-3", "run.seed=-1", 'data.val_split=""', "data.pca_std=-1",
    "model.num_classes=-2", "run.health_window=-5", "optim.batch_size=true", 'optim.lr="fast"',
]


@pytest.mark.parametrize("value", BAD_VALUES)
def test_every_bad_config_value_is_one_line_and_makes_no_run_folder(tiny_store, tmp_path: Path, value: str,
                                                                     capsys) -> None:
    run = tmp_path / "run"
    line = cli_error(capsys, ["train", "--data", tiny_store.path, "--out", run, *tiny_sets(value)])
    assert f"--set {value.split('=')[0]}" in line, line
    assert not run.exists()


@pytest.mark.parametrize("value", ['data.val_split="nope"', 'data.train_split="nope"', "model.num_classes=7",
                                   "data.crop=99", 'model.variants="wide"', "optim.batch_size=1000"])
def test_values_checked_against_the_store_make_no_run_folder(tiny_store, tmp_path: Path, value: str,
                                                             capsys) -> None:
    run = tmp_path / "run"
    cli_error(capsys, ["train", "--data", tiny_store.path, "--out", run, *tiny_sets(value)])
    assert not run.exists()


def test_bad_paths_are_one_line(tiny_store, tmp_path: Path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    train_args = ["train", "--data", tiny_store.path, *tiny_sets()]
    assert "cannot create run directory" in cli_error(capsys, [*train_args, "--out", afile / "run"])
    assert "does not exist" in cli_error(capsys, ["train", "--data", tmp_path / "nowhere", "--out", tmp_path / "r",
                                                  *tiny_sets()])
    assert "--resume: run directory" in cli_error(capsys, ["train", "--resume", tmp_path / "nowhere"])
    assert "not a run directory" in cli_error(capsys, ["train", "--resume", tmp_path])
    assert "is not a finished store" in cli_error(capsys, ["train", "--data", tmp_path, "--out", tmp_path / "r2",
                                                           *tiny_sets()])
    assert "not a folder" in cli_error(capsys, ["prepare", tmp_path, afile])
    assert "does not exist" in cli_error(capsys, ["eval", tmp_path / "nowhere", "--data", tiny_store.path])
    assert "--max-image-pixels" in cli_error(capsys, ["prepare", tmp_path, tmp_path / "s", "--max-image-pixels", -1])
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


def test_report_reads_a_log_cut_short_by_a_kill(tmp_path: Path, capsys) -> None:
    run, _ = tiny_run(tmp_path)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "step", "epoch": 2, "st')
    assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) == 0
    assert (tmp_path / "report.html").is_file()


# --------------------------------------------------------------------------- kill -9 and resume: training


def _kill_train_and_resume(store: Path, tmp_path: Path, whole: Path, moment: float, name: str) -> None:
    """Start `alexnet train`, kill -9 it ``moment`` seconds after its first checkpoint, resume it with
    `alexnet train --resume` (killed and resumed again if it has not finished), compare with ``whole``."""
    run = tmp_path / name
    recipe = tiny_sets("schedule.max_epochs=3", "run.checkpoint_every=1", "run.log_every=1", "data.workers=1")
    proc = start_cli("train", "--data", store, "--out", run, "--quiet", *recipe, capture=False)
    assert wait_for(lambda: (run / "checkpoints" / "last.pt").exists() or proc.poll() is not None)
    wait_for(lambda: proc.poll() is not None, timeout=moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    got = run_cli("train", "--resume", run, "--quiet")
    assert got.returncode == 0 and "Traceback" not in got.stderr, got.stderr
    same_training_state(whole, run)
    steps = [r["step"] for r in deterministic_records(run) if r["kind"] == "step"]
    assert steps == sorted(set(steps))
    assert not list((run / "checkpoints").glob(".*tmp*")) and not (run / ".lock").exists()


def _whole(store: Path, tmp_path: Path) -> Path:
    whole = tmp_path / "whole"
    train(tiny_config(store, "schedule.max_epochs=3", "run.checkpoint_every=1", "run.log_every=1"), whole,
          progress=False)
    return whole


def test_kill_9_during_training_then_resume_equals_an_uninterrupted_run(tiny_store, tmp_path: Path) -> None:
    _kill_train_and_resume(tiny_store.path, tmp_path, _whole(tiny_store.path, tmp_path), 0.5, "killed")


@pytest.mark.slow
def test_kill_9_at_many_moments_of_training(tiny_store, tmp_path: Path) -> None:
    whole = _whole(tiny_store.path, tmp_path)
    rng = random.Random(15)
    for k in range(6):
        _kill_train_and_resume(tiny_store.path, tmp_path, whole, rng.uniform(0, 3), f"killed{k}")


def test_two_trainers_on_one_run(tiny_store, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # A fixed rate: the plateau schedule would end the run after its third reduction, before the second trainer.
    train(tiny_config(tiny_store.path, "run.max_steps=1", "schedule.kind=fixed"), run, progress=False)
    recipe = ["--set", "schedule.max_epochs=100000", "--set", "run.max_steps=0", "--set", "run.log_every=1"]
    first = start_cli("train", "--resume", run, "--quiet", *recipe)
    try:
        assert wait_for(lambda: '"resumed"' in (run / "metrics.jsonl").read_text() or first.poll() is not None)
        second = run_cli("train", "--resume", run, "--quiet", *recipe)
        assert first.poll() is None, first.communicate()[1]
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert second.returncode == 2
    assert f"run directory {run} is in use by another process (pid {first.pid}" in one_line_error(second.stderr)
    assert first.returncode == 130 and "Traceback" not in err
    steps = [r["step"] for r in deterministic_records(run) if r["kind"] == "step"]
    assert steps == sorted(set(steps)), "two writers logged"


# --------------------------------------------------------------------------- kill -9 and resume: prepare


def _tree(root: Path, per_class: int, start: int = 0) -> Path:
    for c in range(3):
        for i in range(start, start + per_class):
            path = root / "train" / f"n{c:08d}" / f"{i:04d}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(1000 * c + i).integers(0, 255, (40, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
    return root


def _digests(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _kill_prepare_and_resume(src: Path, out: Path, reference: Path, moment: float) -> None:
    args = ("prepare", src, out, "--size", 24, "--shard-size", 3, "--workers", 2, "--quiet")
    proc = start_cli(*args, capture=False)
    wait_for(lambda: proc.poll() is not None, timeout=moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if (out / MARKER).exists():  # killed while writing: nothing reads it as a store
        with pytest.raises(UserError, match="incomplete"):
            Store(out)
    elif (out / "manifest.json").exists():  # finished, or the old store before the rerun began: intact
        assert verify_store(out) == []
    got = run_cli(*args)
    assert got.returncode == 0, got.stderr
    assert _digests(out) == _digests(reference)


@pytest.mark.slow  # (a fast kill -9 of a re-prepare: tests/data/test_integrity.py)
def test_kill_9_during_prepare_and_re_prepare(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 8)
    reference = tmp_path / "reference"
    prepare(src, reference, size=24, shard_size=3, workers=1, progress=False)
    _kill_prepare_and_resume(src, tmp_path / "out", reference, 6.0)
    _tree(src, 8, start=8)  # images added: the rerun rewrites every shard
    prepare(src, reference, size=24, shard_size=3, workers=1, progress=False)
    _kill_prepare_and_resume(src, tmp_path / "out", reference, 6.0)


@pytest.mark.slow
def test_kill_9_at_many_moments_of_prepare(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 20)
    reference = tmp_path / "reference"
    prepare(src, reference, size=24, shard_size=3, workers=1, progress=False)
    rng = random.Random(15)
    for k in range(6):
        _kill_prepare_and_resume(src, tmp_path / f"out{k}", reference, rng.uniform(0.5, 12))
    for k in range(4):  # re-prepares over a store made from fewer images
        out = tmp_path / f"re{k}"
        prepare(_tree(tmp_path / f"src{k}", 10), out, size=24, shard_size=3, workers=1, progress=False)
        _kill_prepare_and_resume(src, out, reference, rng.uniform(0.5, 12))


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 700 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mount)], capture_output=True)
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_while_training_is_one_line_and_keeps_the_checkpoint(tiny_store, small_disk: Path) -> None:
    run = small_disk / "run"
    got = run_cli("train", "--data", tiny_store.path, "--out", run, "--quiet",
                  *tiny_sets("run.checkpoint_every=1", "schedule.max_epochs=3"))
    assert got.returncode == 2
    assert "the disk is full" in one_line_error(got.stderr)
    ckpt = json.loads(json.dumps(load_run_config(run).to_dict()))  # the checkpoint still reads
    assert ckpt["data"]["store"] == str(tiny_store.path.resolve())
    assert not list((run / "checkpoints").glob(".*tmp*"))


def test_a_full_disk_while_preparing_is_one_line(tmp_path: Path, small_disk: Path) -> None:
    src = _tree(tmp_path / "src", 40)
    got = run_cli("prepare", src, small_disk / "store", "--size", 64, "--shard-size", 8, "--workers", 1, "--quiet")
    assert got.returncode == 2
    assert "the disk is full" in one_line_error(got.stderr)
    with pytest.raises(Exception, match="incomplete|not a finished store"):
        Store(small_disk / "store")


def test_evaluation_of_a_run_on_a_full_disk(tiny_store, small_disk: Path, tmp_path: Path) -> None:
    run = make_checkpoint(tmp_path / "run", tiny_store)
    (small_disk / "filler").write_bytes(os.urandom(690 * 1024))
    got = run_cli("eval", run, "--data", tiny_store.path, "--out", small_disk / "eval", "--device", "cpu")
    assert got.returncode != 0 and "Traceback" not in got.stderr, got.stderr
