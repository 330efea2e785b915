"""A store is usable only when complete and intact: interrupted rewrites, damaged files, one writer, bombs."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import alexnet.data.prepare as prep
from alexnet.data.prepare import prepare
from alexnet.data.store import MARKER, Store, verify_store
from alexnet.errors import UserError
from alexnet.inference.evaluate import evaluate_checkpoint
from alexnet.locks import FolderLock
from alexnet.training.trainer import train

from helpers import make_checkpoint, one_line_error, run_cli, start_cli, tiny_config, tiny_sets, wait_for

S = 24


def photo_tree(root: Path, per_class: int, classes: int = 3, start: int = 0) -> Path:
    """JPEGs ``start .. start + per_class - 1`` of every class under ``root/train/<wnid>/``."""
    for c in range(classes):
        for i in range(start, start + per_class):
            path = root / "train" / f"n{c:08d}" / f"img{i:04d}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(100 * c + i)
            Image.fromarray(rng.integers(0, 255, (30, 34, 3), dtype=np.uint8)).save(path, quality=90)
    return root


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- an interrupted re-prepare


def test_an_interrupted_re_prepare_leaves_no_store_that_looks_finished(tmp_path: Path, monkeypatch) -> None:
    src = photo_tree(tmp_path / "src", per_class=4)
    out = tmp_path / "out"
    prepare(src, out, size=S, workers=1, progress=False, shard_size=4)
    photo_tree(src, per_class=4, start=4)  # more images: every shard's content moves
    real, calls = prep._run_shard, {"n": 0}

    def interrupted(task):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(prep, "_run_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, size=S, workers=1, progress=False, shard_size=4)
    assert not (out / "manifest.json").exists() and (out / MARKER).exists()
    with pytest.raises(UserError, match="incomplete.*rerun that `alexnet prepare`"):
        Store(out)
    with pytest.raises(UserError, match="incomplete"):
        train(tiny_config(out), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    assert "incomplete" in verify_store(out)[0]
    monkeypatch.setattr(prep, "_run_shard", real)
    prepare(src, out, size=S, workers=1, progress=False, shard_size=4)
    fresh = tmp_path / "fresh"
    prepare(src, fresh, size=S, workers=1, progress=False, shard_size=4)
    assert digests(out) == digests(fresh)


def test_a_killed_re_prepare_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    """kill -9 of `alexnet prepare` rewriting a store after images were added; its workers die with it."""
    src = photo_tree(tmp_path / "src", per_class=6)
    out = tmp_path / "out"
    prepare(src, out, size=S, workers=1, progress=False, shard_size=2)
    photo_tree(src, per_class=30, start=6)
    fresh = tmp_path / "fresh"
    prepare(src, fresh, size=S, workers=1, progress=False, shard_size=2)
    proc = start_cli("prepare", src, out, "--size", S, "--shard-size", 2, "--workers", 2, "--quiet", capture=False)
    assert wait_for(lambda: len(_children(proc.pid)) >= 2 or proc.poll() is not None, timeout=120)
    workers = _children(proc.pid)
    new_shard = out / "train" / "shard-00020.json"  # the old store had shards 0-8 only
    assert wait_for(lambda: new_shard.exists() or proc.poll() is not None)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    if not (out / MARKER).exists():
        pytest.skip("prepare finished before the kill")
    assert len(workers) == 2
    try:
        assert wait_for(lambda: not any(_alive(w) for w in workers), timeout=30), "workers outlived prepare"
    finally:
        for w in workers:  # (only when they did outlive it)
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    assert not (out / "manifest.json").exists()
    with pytest.raises(UserError, match="incomplete"):
        Store(out)
    got = run_cli("prepare", src, out, "--size", S, "--shard-size", 2, "--workers", 2, "--quiet")
    assert got.returncode == 0, got.stderr
    assert digests(out) == digests(fresh)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --------------------------------------------------------------------------- damaged files


def _flip(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, match", [
    ("flip", r"train/shard-00000.npy is damaged \(checksum mismatch"),
    ("truncate", r"train/shard-00000.npy is damaged \(\d+ bytes, expected \d+: truncated"),
    ("labels-truncated", r"train/labels.npy is damaged"),
    ("labels-garbage", r"train/labels.npy is damaged \(not a readable array"),
    ("labels-range", r"train/labels.npy is damaged \(labels outside"),
    ("stats", r"stats.npz is damaged"),
])
def test_a_damaged_store_is_one_error_naming_the_file(tiny_store, tmp_path: Path, damage: str, match: str,
                                                      capsys) -> None:
    shard, labels = tiny_store.path / "train" / "shard-00000.npy", tiny_store.path / "train" / "labels.npy"
    if damage == "flip":
        _flip(shard)
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-100])
    elif damage == "labels-truncated":
        labels.write_bytes(labels.read_bytes()[:-8])
    elif damage == "labels-garbage":
        labels.write_bytes(b"\x00" * 200)
    elif damage == "labels-range":
        arr = np.load(labels)
        arr[0] = 9
        np.save(labels, arr)
    else:
        _flip(tiny_store.path / "stats.npz", 200)
    run = tmp_path / "run"
    with pytest.raises(UserError, match=match) as err:
        train(tiny_config(tiny_store.path), run, progress=False)
    assert "alexnet prepare --verify" in str(err.value)
    assert not run.exists(), "no half-made run folder"
    from alexnet.cli import main

    assert main(["train", "--data", str(tiny_store.path), "--out", str(run), "--quiet", *tiny_sets()]) == 2
    assert "is damaged" in one_line_error(capsys.readouterr().err)
    assert verify_store(tiny_store.path), "prepare --verify reports it too"


def test_checksums_are_skipped_only_when_asked(tiny_store, tmp_path: Path) -> None:
    _flip(tiny_store.path / "train" / "shard-00000.npy")
    state = train(tiny_config(tiny_store.path, 'data.verify="sizes"', "run.max_steps=1"), tmp_path / "r",
                  progress=False)
    assert state.step == 1


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_evaluation_refuses_a_damaged_shard(tiny_store, tmp_path: Path, damage: str) -> None:
    run = make_checkpoint(tmp_path / "run", tiny_store)
    shard = tiny_store.path / "val" / "shard-00000.npy"
    if damage == "flip":
        _flip(shard)
    else:
        shard.write_bytes(shard.read_bytes()[:-1])
    with pytest.raises(UserError, match="val/shard-00000.npy is damaged"):
        evaluate_checkpoint(run, tiny_store.path, out=tmp_path / "eval", device="cpu", progress=False)
    assert not (tmp_path / "eval").exists()


# --------------------------------------------------------------------------- one writer per store


def test_a_store_has_one_writer(tmp_path: Path) -> None:
    src = photo_tree(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    prepare(src, out, size=S, workers=1, progress=False)
    before = digests(out)
    with FolderLock(out, "store"):  # another prepare is writing it
        with pytest.raises(UserError, match=rf"store {out} is in use by another process \(pid {os.getpid()}"):
            prepare(src, out, size=S * 2, workers=1, progress=False)
    assert digests(out) == before and not (out / ".lock").exists()


def test_two_prepare_commands_on_one_store(tmp_path: Path) -> None:
    """The second `alexnet prepare` on an OUT being written stops with one line naming the first's pid."""
    src = photo_tree(tmp_path / "src", per_class=40)
    out = tmp_path / "out"
    first = start_cli("prepare", src, out, "--size", S, "--shard-size", 4, "--workers", 1, "--quiet")
    try:
        assert wait_for(lambda: (out / ".lock").is_file() and (out / ".lock").read_text().strip(), timeout=120)
        second = run_cli("prepare", src, out, "--size", S * 2, "--workers", 1, "--quiet")
        finished_first = first.poll() is not None
    finally:
        first.wait(timeout=300)
    if finished_first:
        pytest.skip("the first prepare finished before the second started")
    assert second.returncode == 2
    assert f"in use by another process (pid {first.pid}" in one_line_error(second.stderr)
    assert first.returncode == 0 and Store(out).image_size == S and verify_store(out) == []


# --------------------------------------------------------------------------- large photos


def test_large_photos_pass_with_a_raised_pixel_limit(tmp_path: Path) -> None:
    src = photo_tree(tmp_path / "src", per_class=1, classes=2)
    Image.new("RGB", (400, 300), (10, 200, 30)).save(src / "train" / "n00000000" / "big.png")
    low = prepare(src, tmp_path / "low", size=S, workers=1, progress=False, max_pixels=100_000)
    assert low.rejected == 1 and "max-image-pixels" in (tmp_path / "low" / "rejected.tsv").read_text()
    got = run_cli("prepare", src, tmp_path / "cli", "--size", S, "--workers", 2, "--max-image-pixels", 0,
                  "--shard-size", 1, "--quiet")
    assert got.returncode == 0, got.stderr
    assert len(Store(tmp_path / "cli").split("train")) == 3


def test_prepare_waits_for_nothing_and_leaves_no_lock(tmp_path: Path) -> None:
    src = photo_tree(tmp_path / "src", per_class=1)
    t0 = time.perf_counter()
    prepare(src, tmp_path / "out", size=S, workers=1, progress=False)
    assert time.perf_counter() - t0 < 60
    assert not (tmp_path / "out" / ".lock").exists() and not (tmp_path / "out" / MARKER).exists()
