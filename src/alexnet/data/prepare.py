"""``alexnet prepare SRC OUT``: an ImageNet-format tree -> the store training reads (§2).

Input layouts (``SRC``):

* ``SRC/train/<class>/*`` plus other split folders: ``SRC/val/<class>/*``, or a flat
  ``SRC/val/`` labelled by ``--val-labels FILE``; any other folder holding images
  (``test/``...) becomes a split of its own (flat and without labels: label -1);
* any folder-per-class tree with no ``train/`` folder: ``SRC`` itself is the
  training split.

Class index = position of the class folder name (wnid) in sorted order.  A class
folder with no usable image is kept (with a warning) so that indices stay stable.
Human-readable names come from ``SRC/LOC_synset_mapping.txt``, ``SRC/words.txt`` or
the devkit ``meta.mat`` (needs scipy), else the folder names.

Each image becomes one 256x256 RGB patch (:mod:`alexnet.data.images`); shards
of ``--shard-size`` source files are decoded and written by worker processes,
atomically and resumably (:mod:`alexnet.data.store`).  Files that cannot be used are
listed in ``OUT/rejected.tsv``; nothing crashes on bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from alexnet.errors import UserError
from alexnet.paper import DATA, FALL2009
from alexnet.data.store import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_SHARD_SIZE,
    FORMAT_VERSION,
    FORMATS,
    MANIFEST,
    finalize_store,
    load_shard,
    load_valid_sidecar,
    stats_partial,
    verify_store,
    write_shard,
)

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MARKER = ".prepare-in-progress.json"
_WNID = re.compile(r"^n\d{8}$")


@dataclass
class PrepareReport:
    """What :func:`prepare` did."""

    out: Path
    counts: dict[str, int]  # images stored per split
    num_classes: int
    rejected: int
    upscaled: int
    noted: int  # images stored with a note in notes.tsv
    empty_classes: list[str]
    notes: list[str] = field(default_factory=list)  # run-level messages
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
            f"{self.noted} images with notes (see notes.tsv)",
        ]
        if self.empty_classes:
            lines.append(f"warning: {len(self.empty_classes)} classes have no images: {', '.join(self.empty_classes[:10])}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- discovery


@dataclass
class _Item:
    path: str  # absolute
    rel: str  # relative to SRC
    label: int
    size: int
    mtime_ns: int


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _scan_files(folder: Path) -> tuple[list[os.DirEntry[str]], list[os.DirEntry[str]]]:
    """(files, folders) directly in ``folder``, hidden entries skipped, sorted by name."""
    files, dirs = [], []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except PermissionError as err:
        raise UserError(f"cannot list {folder}: permission denied") from err
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.is_dir():
            dirs.append(e)
        elif e.is_file():
            files.append(e)
    return files, dirs


def _has_images(folder: Path) -> bool:
    files, dirs = _scan_files(folder)
    if any(_is_image_name(f.name) for f in files):
        return True
    for d in dirs:
        try:
            if any(_is_image_name(n) for n in os.listdir(d.path)):
                return True
        except OSError:
            continue
    return False


def _stat_item(entry: os.DirEntry[str], src: Path, label: int) -> _Item:
    st = entry.stat()
    return _Item(entry.path, os.path.relpath(entry.path, src), label, st.st_size, st.st_mtime_ns)


@dataclass
class _Plan:
    classes: list[str]
    splits: dict[str, list[_Item]]
    pre_rejected: dict[str, list[tuple[str, str]]]  # files rejected before decoding
    empty_classes: list[str]
    notes: list[str]


def _class_folders(folder: Path, hint: str) -> tuple[list[str], dict[str, int]]:
    """The class names (sub-folder names, sorted) under ``folder`` and their label indices."""
    _, class_dirs = _scan_files(folder)
    classes = [d.name for d in class_dirs]
    if not classes:
        raise UserError(f"no class folders found in {folder}{hint}")
    return classes, {c: i for i, c in enumerate(classes)}


def _class_tree(folder: Path, src: Path, class_index: dict[str, int] | None, split: str,
                rejected: list[tuple[str, str]]) -> tuple[list[_Item], dict[str, int]]:
    files, dirs = _scan_files(folder)
    if class_index is None:
        class_index = {d.name: i for i, d in enumerate(dirs)}
    for f in files:
        rejected.append((os.path.relpath(f.path, src), "file outside any class folder"))
    items: list[_Item] = []
    per_class: dict[str, int] = {}
    for d in dirs:
        if d.name not in class_index:
            raise UserError(
                f"{os.path.relpath(d.path, src)} is not a class of the training split; "
                f"split {split!r} must use the training class folders"
            )
        cfiles, cdirs = _scan_files(Path(d.path))
        for sub in cdirs:
            rejected.append((os.path.relpath(sub.path, src), "folder inside a class folder (not searched)"))
        per_class[d.name] = len(cfiles)
        items += [_stat_item(f, src, class_index[d.name]) for f in cfiles]
    return items, per_class


def _discover(src: Path, val_labels: Path | None, split_half: bool, seed: int) -> _Plan:
    if not src.exists():
        raise UserError(f"source folder {src} does not exist")
    if not src.is_dir():
        raise UserError(f"source {src} is not a folder")
    notes: list[str] = []
    pre: dict[str, list[tuple[str, str]]] = {}
    splits: dict[str, list[_Item]] = {}
    train_dir = src / "train"
    if train_dir.is_dir():
        _, top_dirs = _scan_files(src)
        classes, index = _class_folders(train_dir, "")
        pre["train"] = []
        splits["train"], per_class = _class_tree(train_dir, src, index, "train", pre["train"])
        for d in top_dirs:
            if d.name == "train":
                continue
            folder = Path(d.path)
            if not _has_images(folder):
                notes.append(f"{d.name}/ holds no images and was ignored")
                continue
            pre[d.name] = []
            files, sub = _scan_files(folder)
            flat = any(_is_image_name(f.name) for f in files)
            if flat:
                if sub:
                    notes.append(f"{d.name}/ is flat; its sub-folders were ignored")
                labels_file = val_labels if d.name == "val" else None
                splits[d.name] = _flat_split(folder, src, classes, labels_file, pre[d.name], notes)
            else:
                if d.name == "val" and val_labels is not None:
                    raise UserError(f"--val-labels was given but {folder} is laid out by class folders")
                splits[d.name], _ = _class_tree(folder, src, index, d.name, pre[d.name])
        if val_labels is not None and "val" not in splits:
            raise UserError(f"--val-labels was given but {src / 'val'} does not exist or holds no images")
    else:
        if val_labels is not None:
            raise UserError(f"--val-labels needs a flat {src / 'val'} folder beside {src / 'train'}")
        classes, index = _class_folders(src, " (expected SRC/train/<class>/ or SRC/<class>/)")
        pre["train"] = []
        files, _ = _scan_files(src)
        for f in files:  # loose files beside class folders (name tables, readme) are not images to store
            if _is_image_name(f.name):
                pre["train"].append((os.path.relpath(f.path, src), "file outside any class folder"))
        items: list[_Item] = []
        per_class = {}
        for name in classes:
            cfiles, cdirs = _scan_files(src / name)
            for sub in cdirs:
                pre["train"].append((os.path.relpath(sub.path, src), "folder inside a class folder (not searched)"))
            per_class[name] = len(cfiles)
            items += [_stat_item(f, src, index[name]) for f in cfiles]
        splits["train"] = items
    empty = [c for c in classes if per_class.get(c, 0) == 0]
    if split_half:
        if "test" in splits:
            raise UserError(f"--split-half makes a test split, but {src / 'test'} already exists")
        splits["train"], splits["test"] = _split_half(splits["train"], len(classes), seed)
        pre["test"] = []
    return _Plan(classes, splits, pre, empty, notes)


def _split_half(items: list[_Item], num_classes: int, seed: int) -> tuple[list[_Item], list[_Item]]:
    """Half of each class (rounded up) to train, the rest to test (§6, Fall 2009), seeded."""
    rng = np.random.default_rng(seed)
    by_class: list[list[_Item]] = [[] for _ in range(num_classes)]
    for it in items:
        by_class[it.label].append(it)
    train, test = [], []
    for members in by_class:
        order = rng.permutation(len(members))
        n_train = math.ceil(len(members) * FALL2009.train_fraction)
        train += sorted((members[i] for i in order[:n_train]), key=lambda it: it.rel)
        test += sorted((members[i] for i in order[n_train:]), key=lambda it: it.rel)
    key = lambda it: (it.label, it.rel)  # noqa: E731
    return sorted(train, key=key), sorted(test, key=key)


# --------------------------------------------------------------------------- labels of a flat split


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text("utf-8-sig")
    except OSError as err:
        raise UserError(f"cannot read labels file {path}: {err.strerror or err}") from err
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _flat_split(folder: Path, src: Path, classes: list[str], labels_file: Path | None,
                rejected: list[tuple[str, str]], notes: list[str]) -> list[_Item]:
    files, _ = _scan_files(folder)
    if labels_file is not None:
        files = [f for f in files if Path(f.path).resolve() != labels_file.resolve()]
    if labels_file is None:
        notes.append(f"{folder.name}/ is flat and has no labels file: stored unlabelled (label -1)")
        return [_stat_item(f, src, -1) for f in files]
    index = {c: i for i, c in enumerate(classes)}
    lines = _read_lines(labels_file)
    if lines and "," in lines[0]:
        return _labels_from_csv(files, src, lines, index, labels_file, folder)
    if len(lines) != len(files):
        raise UserError(
            f"labels file {labels_file} has {len(lines)} labels but {folder} holds {len(files)} files; "
            "they must match one to one in sorted file-name order"
        )
    if all(ln in index for ln in lines):
        labels = [index[ln] for ln in lines]
    elif all(ln.isdigit() for ln in lines):
        ids = [int(ln) for ln in lines]
        mapping = _ilsvrc_id_map(src, classes, notes)
        if mapping is None:
            if min(ids) < 1 or max(ids) > len(classes):
                raise UserError(
                    f"labels file {labels_file}: integer labels are 1-based class ids and must lie in 1..{len(classes)}"
                )
            labels = [i - 1 for i in ids]
            notes.append("integer validation labels read as 1-based positions in the sorted wnid list")
        else:
            bad = sorted({i for i in ids if i not in mapping})
            if bad:
                raise UserError(f"labels file {labels_file}: ILSVRC ids {bad[:5]} are not in the devkit's class list")
            labels = [mapping[i] for i in ids]
    else:
        unknown = next(ln for ln in lines if ln not in index and not ln.isdigit())
        raise UserError(f"labels file {labels_file}: {unknown!r} is neither a training class (wnid) nor a class id")
    return [_stat_item(f, src, lab) for f, lab in zip(files, labels)]


def _labels_from_csv(files: list[os.DirEntry[str]], src: Path, lines: list[str], index: dict[str, int],
                     labels_file: Path, folder: Path) -> list[_Item]:
    table: dict[str, int] = {}
    for row in csv.reader(lines):
        if len(row) < 2:
            continue
        name, wnid = row[0].strip(), (row[1].strip().split() or [""])[0]
        if wnid not in index:
            if not table:  # header line such as "file,wnid" / "ImageId,PredictionString"
                continue
            raise UserError(f"labels file {labels_file}: {wnid!r} (for {name}) is not a training class")
        table[name] = index[wnid]
        table.setdefault(os.path.splitext(name)[0], index[wnid])
    items, missing = [], 0
    for f in files:
        lab = table.get(f.name, table.get(os.path.splitext(f.name)[0]))
        if lab is None:
            missing += 1
        else:
            items.append(_stat_item(f, src, lab))
    if missing:
        raise UserError(
            f"labels file {labels_file} has {len(table)} labelled entries but {folder} holds {len(files)} files, "
            f"{missing} of them without a label"
        )
    return items


def _find_meta_mat(src: Path) -> Path | None:
    for pattern in ("meta.mat", "*/meta.mat", "*/data/meta.mat"):
        found = sorted(src.glob(pattern))
        if found:
            return found[0]
    return None


def _read_meta_mat(path: Path) -> list[tuple[int, str, str]] | None:
    """(ILSVRC id, wnid, words) of the leaf synsets of a devkit meta.mat; None without scipy."""
    try:
        from scipy.io import loadmat  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        syn = loadmat(str(path), squeeze_me=True)["synsets"]
        rows = []
        for s in syn:
            ident, wnid, words, children = int(s[0]), str(s[1]), str(s[2]), int(s[4])
            if children == 0:
                rows.append((ident, wnid, words))
        return rows
    except Exception as err:  # noqa: BLE001
        raise UserError(f"devkit file {path} cannot be read: {err}") from err


def _ilsvrc_id_map(src: Path, classes: list[str], notes: list[str]) -> dict[int, int] | None:
    meta = _find_meta_mat(src)
    if meta is None:
        return None
    rows = _read_meta_mat(meta)
    if rows is None:
        raise UserError(
            f"integer validation labels are ILSVRC ids whose order is given by {meta}, which needs scipy to read; "
            "install scipy or pass a wnid-per-line or CSV labels file"
        )
    index = {c: i for i, c in enumerate(classes)}
    return {ident: index[wnid] for ident, wnid, _ in rows if wnid in index}


# --------------------------------------------------------------------------- class names


def class_names(src: Path, wnids: list[str], notes: list[str] | None = None) -> list[tuple[str, str]]:
    """(wnid, human name) for each class from LOC_synset_mapping.txt, words.txt or meta.mat."""
    notes = notes if notes is not None else []
    names: dict[str, str] = {}
    loc = src / "LOC_synset_mapping.txt"
    words = src / "words.txt"
    if loc.is_file():
        for ln in _read_lines(loc):
            wnid, _, name = ln.partition(" ")
            names.setdefault(wnid, name.strip())
    elif words.is_file():
        for ln in _read_lines(words):
            wnid, _, name = ln.partition("\t")
            names.setdefault(wnid.strip(), name.strip())
    else:
        meta = _find_meta_mat(src)
        if meta is not None:
            rows = _read_meta_mat(meta)
            if rows is None:
                notes.append(f"{meta} needs scipy to read; class names are the folder names")
            else:
                for _, wnid, name in rows:
                    names.setdefault(wnid, name)
    return [(w, names.get(w) or w) for w in wnids]


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


def _worker_init(max_pixels: int | None) -> None:
    import torch
    from PIL import Image

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


def _shard_key(items: list[_Item], size: int, fmt: str, quality: int) -> str:
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
    if out.is_dir() and any(out.iterdir()):
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
    seed: int = 0,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
    fmt: str = "npy",
    quality: int = DEFAULT_JPEG_QUALITY,
) -> PrepareReport:
    """Turn the image tree ``src`` into a store in ``out``; resumable, parallel over ``workers``.

    Rerunning on a partly written ``out`` reuses every finished shard whose checksum
    still matches and produces the same bytes as an uninterrupted run.
    """
    start = time.perf_counter()
    src, out = Path(src), Path(out)
    if size < 1:
        raise UserError(f"--size must be a positive number of pixels, got {size}")
    if shard_size < 1:
        raise UserError(f"--shard-size must be at least 1, got {shard_size}")
    if fmt not in FORMATS:
        raise UserError(f"--format: unknown value {fmt!r}; allowed: {', '.join(FORMATS)}")
    if not 1 <= quality <= 100:
        raise UserError(f"--jpeg-quality must lie in 1..100, got {quality}")
    if val_labels is not None and not Path(val_labels).is_file():
        raise UserError(f"labels file {val_labels} does not exist")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")

    plan = _discover(src, Path(val_labels) if val_labels else None, split_half, seed)
    notes = list(plan.notes)
    classes = class_names(src, plan.classes, notes)
    _check_out(out, src)
    options = {"size": size, "shard_size": shard_size, "format": fmt, "val_labels": str(val_labels) if val_labels else None,
               "split_half": split_half, "seed": seed if split_half else None}
    if fmt == "jpeg":
        options["jpeg_quality"] = quality
    try:
        (out / MARKER).write_text(json.dumps(options, sort_keys=True) + "\n")
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
    from PIL import Image

    executor = None
    try:
        import torch  # noqa: F401 - imported once here (seconds) rather than in every forked worker

        if workers > 1 and len(tasks) > 1:
            # fork (as torch's DataLoader does; workers set torch to one thread): unlike
            # spawn it does not re-run the caller's __main__ script in every worker.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            executor = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                                           initializer=_worker_init, initargs=(Image.MAX_IMAGE_PIXELS,))
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
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    try:
        (out / MARKER).unlink()
    except OSError:
        pass

    all_cars = [c for cars in sidecars.values() for c in cars]
    note_rows = [n for c in all_cars for n in c["notes"]]
    empty = list(plan.empty_classes)
    if empty:
        notes.append("empty classes are kept so that class indices stay stable")
    return PrepareReport(
        out=out,
        counts={s: sum(c["count"] for c in cars) for s, cars in sidecars.items()},
        num_classes=len(classes),
        rejected=sum(len(c["rejected"]) for c in all_cars) + sum(len(p) for p in plan.pre_rejected.values()),
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


def verify(out: Path) -> list[str]:
    """Check every shard's checksum and count against the manifest; [] means the store is intact."""
    return verify_store(Path(out))


# --------------------------------------------------------------------------- command line


def register(subparsers: Any) -> None:
    """Add the ``prepare`` sub-command to an argparse sub-parser collection."""
    p = subparsers.add_parser(
        "prepare",
        help="turn an ImageNet-format image tree into the store training reads",
        description="Decode, rescale (shorter side to --size), centre-crop and store every image of SRC in OUT "
        "(§2); resumable; `--verify OUT` checks a store.",
    )
    p.add_argument("src", nargs="?", type=Path, help="source tree: SRC/train/<class>/* (+ val/, test/) or SRC/<class>/*")
    p.add_argument("out", nargs="?", type=Path, help="store folder to write (created; resumed if partly written)")
    p.add_argument("--verify", metavar="OUT", type=Path, help="check a store's checksums and counts instead")
    p.add_argument("--size", type=int, default=None,
                   help=f"side of the stored square images (default {DATA.image_size}, §2; 32 with --fashion-mnist)")
    p.add_argument("--fashion-mnist", action="store_true",
                   help="SRC is a folder of Fashion-MNIST IDX files (Debian's dataset-fashion-mnist): store them "
                        "with a border of zeros up to --size, as the fashion-mnist preset expects")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--val-labels", type=Path, default=None, metavar="FILE",
                   help="labels for a flat SRC/val/: one wnid or 1-based class id per line in sorted file order, or CSV file,wnid")
    p.add_argument("--split-half", action="store_true",
                   help="put half of each class in train and half in test (§6, Fall 2009 convention)")
    p.add_argument("--seed", type=int, default=0, help="seed of --split-half (default %(default)s)")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="source images per shard (default %(default)s)")
    p.add_argument("--format", choices=FORMATS, default="npy", help="npy: raw uint8 (fast reads); jpeg: re-encoded, smaller")
    p.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY, help="quality of --format jpeg (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``alexnet prepare`` from parsed arguments; returns the exit code."""
    if args.verify is not None:
        if args.src is not None:
            raise UserError("give either --verify OUT or SRC OUT, not both")
        problems = verify(args.verify)
        for p in problems:
            print(p)
        print(f"{args.verify}: {'ok' if not problems else f'{len(problems)} problems'}")
        return 0 if not problems else 1
    if args.src is None or args.out is None:
        raise UserError("alexnet prepare needs SRC and OUT (or --verify OUT)")
    if args.fashion_mnist:
        return _prepare_fashion_mnist(args.src, args.out, args.size)
    size = DATA.image_size if args.size is None else args.size  # --size 0 stays an error, not the default
    report = prepare(args.src, args.out, size=size, workers=args.workers, val_labels=args.val_labels,
                     split_half=args.split_half, seed=args.seed, shard_size=args.shard_size,
                     progress=not args.no_progress, fmt=args.format, quality=args.jpeg_quality)
    print(report.summary())
    return 0


def _prepare_fashion_mnist(src: Path, out: Path, size: int | None) -> int:
    """``alexnet prepare --fashion-mnist IDX_DIR OUT``: the 28x28 images centred on zeros, ``size`` a side."""
    from alexnet.data.sources.fashion_mnist import IMAGE_SIDE, PRESET_PAD, pad_for_side, write_fashion_store

    size = IMAGE_SIDE + 2 * PRESET_PAD if size is None else size
    pad = pad_for_side(size)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; choose another OUT")
    store = write_fashion_store(out, src, pad)
    print(f"{out}: Fashion-MNIST at {size}x{size}, splits {', '.join(store.splits())}")
    return 0
