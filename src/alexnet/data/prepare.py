"""Preparing a store: an ImageNet-format tree -> the store training reads (§2), resumable and parallel.

:func:`prepare` finds the images and their classes (:mod:`alexnet.data.discover`),
decodes each into one S x S RGB patch (:mod:`alexnet.data.images`: shorter side to
S, central patch), and writes shards of ``shard_size`` source files from worker
processes, atomically and resumably (:mod:`alexnet.data.shards`), then the
statistics and the manifest.  Files that cannot be used are listed in
``OUT/rejected.tsv``; nothing crashes on bad input.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from alexnet.data.discover import SKIPPED, SourceImage, class_names, discover
from alexnet.data.images import DEFAULT_MAX_PIXELS, pixel_limit
from alexnet.data.shards import finalize_store, load_valid_sidecar, write_shard
from alexnet.data.stats import stats_partial
from alexnet.data.store import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_SHARD_SIZE,
    FORMAT_VERSION,
    FORMATS,
    MANIFEST,
    MARKER,
    load_shard,
)
from alexnet.errors import UserError
from alexnet.paper import DATA, FALL2009
from alexnet.locks import LOCK_NAME, FolderLock, die_with_parent
from alexnet.runtime import atomic_json, fsync_dir


@dataclass
class PrepareReport:
    """What :func:`prepare` did."""

    out: Path
    counts: dict[str, int]  # images stored per split
    num_classes: int
    rejected: int  # images that could not be used
    upscaled: int
    noted: int  # images stored with a note in notes.tsv
    empty_classes: list[str]
    notes: list[str] = field(default_factory=list)  # run-level messages
    skipped: int = 0  # files that are not images by their name (notes.txt...), listed in rejected.tsv
    shards_written: int = 0
    shards_reused: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return sum(self.counts.values()) / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """A few human-readable lines for the command line."""
        splits = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        lines = [
            f"store {self.out}: {self.num_classes} classes; {splits} images",
            f"{self.shards_written} shards written, {self.shards_reused} reused; "
            f"{self.seconds:.1f} s ({self.images_per_second:.0f} images/s)",
            f"{self.rejected} files rejected (see rejected.tsv); {self.upscaled} images upscaled; "
            f"{self.noted} images with notes (see notes.tsv)"
            + (f"; {self.skipped} non-image files skipped" if self.skipped else ""),
        ]
        if self.empty_classes:
            lines.append(f"warning: {len(self.empty_classes)} classes have no images: {', '.join(self.empty_classes[:10])}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- the shard worker


@dataclass
class _ShardTask:
    split: str
    index: int
    folder: str
    items: list[tuple[str, str, int]]  # (absolute path, relative path, label)
    key: str
    size: int
    fmt: str
    quality: int


def _worker_init(max_pixels: int | None, parent: int) -> None:
    import torch
    from PIL import Image

    die_with_parent(parent)  # a kill -9 of prepare must not leave workers writing shards
    Image.MAX_IMAGE_PIXELS = max_pixels
    torch.set_num_threads(1)  # one process per core, as torch's DataLoader workers do


@contextlib.contextmanager
def _torch_one_thread() -> Iterator[None]:
    """In-process decoding: one torch thread, restoring the caller's setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_shard(task: _ShardTask) -> dict[str, Any]:
    """Decode one shard's images and write the shard (or reuse a finished one)."""
    from alexnet.data.images import ImageRejected, load_image

    folder = Path(task.folder)
    done = load_valid_sidecar(folder, task.index, task.key)
    if done is not None:
        done["reused"] = True
        return done
    images = np.empty((len(task.items), task.size, task.size, 3), np.uint8)
    labels, paths, rejected, notes = [], [], [], []
    n = 0
    for path, rel, label in task.items:
        try:
            img, img_notes = load_image(path, task.size)
        except ImageRejected as err:
            rejected.append((rel, str(err)))
            continue
        images[n] = img
        n += 1
        labels.append(label)
        paths.append(rel)
        notes += [(rel, note) for note in img_notes]
    sidecar = write_shard(folder, task.index, images[:n], labels, paths, fmt=task.fmt, quality=task.quality,
                          key=task.key, rejected=rejected, notes=notes)
    sidecar["reused"] = False
    return sidecar


def _stats_task(args: tuple[str, int, str, int]) -> Any:
    folder, index, fmt, size = args
    return stats_partial(load_shard(Path(folder), index, fmt), size)


def _shard_key(items: list[SourceImage], size: int, fmt: str, quality: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": FORMAT_VERSION, "size": size, "fmt": fmt, "q": quality if fmt == "jpeg" else None}).encode())
    for it in items:
        h.update(f"\n{it.rel}\t{it.label}\t{it.size}\t{it.mtime_ns}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


# --------------------------------------------------------------------------- prepare / verify


def _check_out(out: Path, src: Path) -> None:
    if out.resolve() == src.resolve():
        raise UserError(f"output folder {out} is the source folder; choose another")
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(p.name != LOCK_NAME and not p.name.startswith(".write-test-") for p in out.iterdir()):
        if not (out / MANIFEST).is_file() and not (out / MARKER).is_file():
            raise UserError(f"output folder {out} is not empty and is not a store; choose an empty or new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise _os_user_error(err, f"cannot write to output folder {out}") from err


def _os_user_error(err: OSError, what: str) -> UserError:
    if err.errno == errno.ENOSPC:
        return UserError(f"{what}: the disk is full (free space and rerun; finished shards are kept)")
    return UserError(f"{what}: {err.strerror or err}")


def _clean_stale(out: Path, planned: dict[str, int], fmt: str) -> None:
    """Remove temp files, and shard files not in the current plan (from an earlier run's options)."""
    from alexnet.data.store import shard_files, shard_name

    for sub in out.iterdir():
        if not sub.is_dir():
            continue
        ours = any(p.name.startswith("shard-") for p in sub.iterdir())
        if sub.name not in planned:
            if ours:
                shutil.rmtree(sub)
            continue
        keep = {f"{shard_name(i)}.json" for i in range(planned[sub.name])}
        keep |= {n for i in range(planned[sub.name]) for n in shard_files(i, fmt)}
        keep |= {"labels.npy", "paths.txt"}
        for p in sub.iterdir():
            if p.name not in keep and (p.name.startswith("shard-") or ".tmp-" in p.name):
                p.unlink()


def prepare(
    src: Path,
    out: Path,
    *,
    size: int = DATA.image_size,
    workers: int | None = None,
    val_labels: Path | None = None,
    split_half: bool = False,
    holdout: int = 0,
    seed: int = 0,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
    fmt: str = "npy",
    quality: int = DEFAULT_JPEG_QUALITY,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PrepareReport:
    """Turn the image tree ``src`` into a store in ``out``; resumable, parallel over ``workers``.

    Rerunning on a partly written ``out`` reuses every finished shard whose checksum
    still matches and produces the same bytes as an uninterrupted run.  While it runs,
    ``out`` is locked (a second ``prepare`` on it stops with one line naming this one)
    and marked unfinished: its manifest is removed before anything is rewritten and
    written last, so no reader ever takes a half-rewritten store for a finished one.
    ``max_pixels``: images with more pixels are refused as decompression bombs (0: no limit).
    """
    start = time.perf_counter()
    src, out = Path(src), Path(out)
    if size < 1:
        raise UserError(f"must be a positive number of pixels, got {size}", key="size")
    if shard_size < 1:
        raise UserError(f"must be at least 1, got {shard_size}", key="shard_size")
    if fmt not in FORMATS:
        raise UserError(f"unknown value {fmt!r}; allowed: {', '.join(FORMATS)}", key="format")
    if not 1 <= quality <= 100:
        raise UserError(f"must lie in 1..100, got {quality}", key="jpeg_quality")
    if val_labels is not None and not Path(val_labels).is_file():
        raise UserError(f"labels file {val_labels} does not exist", key="val_labels")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers < 1:
        raise UserError(f"must be at least 1, got {workers}", key="workers")
    if max_pixels < 0:
        raise UserError(f"must be 0 (no limit) or a positive number of pixels, got {max_pixels}",
                        key="max_image_pixels")

    plan = discover(src, Path(val_labels) if val_labels else None, split_half, seed, holdout)
    notes = list(plan.notes)
    classes = class_names(src, plan.classes, notes)
    _check_out(out, src)
    lock = FolderLock(out, "store").acquire()
    try:
        return _prepare_locked(src, out, plan, notes, classes, start=start, size=size, workers=workers,
                               val_labels=val_labels, split_half=split_half, holdout=holdout, seed=seed,
                               shard_size=shard_size, progress=progress, fmt=fmt, quality=quality,
                               max_pixels=max_pixels)
    finally:
        lock.release()


def _prepare_locked(src: Path, out: Path, plan: Any, notes: list[str], classes: list[tuple[str, str]], *,
                    start: float, size: int, workers: int, val_labels: Path | None, split_half: bool, holdout: int,
                    seed: int, shard_size: int, progress: bool, fmt: str, quality: int,
                    max_pixels: int) -> PrepareReport:
    """:func:`prepare` once ``out`` is checked and locked."""
    options = {"size": size, "shard_size": shard_size, "format": fmt, "val_labels": str(val_labels) if val_labels else None,
               "split_half": split_half, "holdout": holdout, "seed": seed if split_half or holdout else None}
    if fmt == "jpeg":
        options["jpeg_quality"] = quality
    try:
        atomic_json(out / MARKER, options, sort_keys=True)
        # the old manifest goes before the first rewrite: an interrupted rerun never leaves a store
        # that looks finished beside shards, labels or statistics of the new plan
        (out / MANIFEST).unlink(missing_ok=True)
        fsync_dir(out)
    except OSError as err:
        raise _os_user_error(err, f"cannot write to output folder {out}") from err

    tasks: list[_ShardTask] = []
    planned: dict[str, int] = {}
    for split, items in plan.splits.items():
        folder = out / split
        folder.mkdir(exist_ok=True)
        chunks = [items[i : i + shard_size] for i in range(0, len(items), shard_size)] or [[]]
        planned[split] = len(chunks)
        for k, chunk in enumerate(chunks):
            tasks.append(_ShardTask(split, k, str(folder), [(it.path, it.rel, it.label) for it in chunk],
                                    _shard_key(chunk, size, fmt, quality), size, fmt, quality))
    _clean_stale(out, planned, fmt)

    results: dict[tuple[str, int], dict[str, Any]] = {}
    total = sum(len(t.items) for t in tasks)
    bar: Any = _NoBar()
    executor = None
    stack = contextlib.ExitStack()
    stack.enter_context(pixel_limit(max_pixels or 0))  # workers=1 decodes in this process
    try:
        import torch  # noqa: F401 - imported once here (seconds) rather than in every forked worker

        if workers > 1 and len(tasks) > 1:
            # fork (as torch's DataLoader does; workers set torch to one thread): unlike
            # spawn it does not re-run the caller's __main__ script in every worker.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            executor = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                                           initializer=_worker_init, initargs=(max_pixels or None, os.getpid()))
            futures = {executor.submit(_run_shard, t): t for t in tasks}
            from concurrent.futures import as_completed

            bar = _progress_bar(total, progress)  # after the fork: no tqdm monitor thread in workers
            for fut in as_completed(futures):
                t = futures[fut]
                results[(t.split, t.index)] = fut.result()
                bar.update(len(t.items))
        else:
            bar = _progress_bar(total, progress)
            with _torch_one_thread():
                for t in tasks:
                    results[(t.split, t.index)] = _run_shard(t)
                    bar.update(len(t.items))
        bar.close()

        sidecars = {split: [results[(split, k)] for k in range(planned[split])] for split in plan.splits}

        def partials(split: str, indices: list[int]) -> Iterable[Any]:
            args = [(str(out / split), i, fmt, size) for i in indices]
            if executor is not None:
                return executor.map(_stats_task, args)
            return map(_stats_task, args)

        source = str(src.resolve())
        split_meta = {"seed": seed, "train_fraction": FALL2009.train_fraction} if split_half else None
        manifest_cars = {s: [{k: v for k, v in c.items() if k != "reused"} for c in cars] for s, cars in sidecars.items()}
        for split, pre in plan.pre_rejected.items():  # files rejected before decoding, listed first
            if pre and split in manifest_cars:
                first = manifest_cars[split][0]
                first["rejected"] = [list(r) for r in pre] + first["rejected"]
        finalize_store(out, image_size=size, fmt=fmt, quality=quality, classes=classes, sidecars=manifest_cars,
                       source=source, options=options, split_half=split_meta, stats_split="train", partials=partials)
    except OSError as err:
        raise _os_user_error(err, f"writing the store {out} failed") from err
    finally:
        bar.close()
        stack.close()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    try:
        (out / MARKER).unlink()
        fsync_dir(out)
    except OSError:
        pass

    all_cars = [c for cars in sidecars.values() for c in cars]
    skipped = sum(1 for pre in plan.pre_rejected.values() for _, reason in pre if reason == SKIPPED)
    note_rows = [n for c in all_cars for n in c["notes"]]
    empty = list(plan.empty_classes)
    if empty:
        notes.append("empty classes are kept so that class indices stay stable")
    return PrepareReport(
        out=out,
        counts={s: sum(c["count"] for c in cars) for s, cars in sidecars.items()},
        num_classes=len(classes),
        rejected=sum(len(c["rejected"]) for c in all_cars) + sum(len(p) for p in plan.pre_rejected.values()) - skipped,
        skipped=skipped,
        upscaled=sum(1 for _, n in note_rows if n.startswith("upscaled")),
        noted=len({p for p, _ in note_rows}),
        empty_classes=empty,
        notes=notes,
        shards_written=sum(1 for c in all_cars if not c["reused"]),
        shards_reused=sum(1 for c in all_cars if c["reused"]),
        seconds=time.perf_counter() - start,
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="prepare", smoothing=0.1, file=sys.stderr)

