"""Where the images of an ImageNet-format tree are, which class each belongs to, and its class names.

Layouts (``SRC``):

* ``SRC/train/<class>/*`` plus other split folders: ``SRC/val/<class>/*``, or a flat
  ``SRC/val/`` labelled by a labels file (one wnid or 1-based ILSVRC id per line in
  sorted file order, or CSV ``file,wnid``); any other folder holding images
  (``test/``...) becomes a split of its own (flat and without labels: label -1);
* any folder-per-class tree with no ``train/`` folder: ``SRC`` itself is the
  training split.

Class index = position of the class folder name (wnid) in sorted order.  A class
folder with no usable image is kept (with a warning) so that indices stay stable.
Human-readable names come from ``SRC/LOC_synset_mapping.txt``, ``SRC/words.txt`` or
the devkit ``meta.mat`` (needs scipy), else the folder names.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexnet.data.store import HOLDOUT_SPLIT
from alexnet.errors import UserError
from alexnet.paper import FALL2009

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: Files that are surely not images (notes, tables, archives, scripts): skipped by name, never decoded nor
#: counted as rejected images; they are listed in rejected.tsv with the reason SKIPPED.
NOT_IMAGE_SUFFIXES = (".txt", ".md", ".rst", ".csv", ".tsv", ".json", ".xml", ".html", ".htm", ".pdf", ".doc",
                      ".docx", ".py", ".sh", ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".mat", ".db",
                      ".ini", ".log", ".yaml", ".yml", ".toml", ".npy", ".npz", ".pkl", ".mp4", ".avi", ".mov")
SKIPPED = "not an image file (skipped by its name)"


@dataclass
class SourceImage:
    path: str  # absolute
    rel: str  # relative to SRC
    label: int
    size: int
    mtime_ns: int


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _images_only(files: list[os.DirEntry[str]], src: Path, rejected: list[tuple[str, str]]) -> list[os.DirEntry[str]]:
    """``files`` without the ones named as non-images (those go to ``rejected`` as skipped)."""
    kept = []
    for f in files:
        if f.name.lower().endswith(NOT_IMAGE_SUFFIXES):
            rejected.append((os.path.relpath(f.path, src), SKIPPED))
        else:
            kept.append(f)
    return kept


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


def _stat_item(entry: os.DirEntry[str], src: Path, label: int) -> SourceImage:
    st = entry.stat()
    return SourceImage(entry.path, os.path.relpath(entry.path, src), label, st.st_size, st.st_mtime_ns)


@dataclass
class SourcePlan:
    classes: list[str]
    splits: dict[str, list[SourceImage]]
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
                rejected: list[tuple[str, str]]) -> tuple[list[SourceImage], dict[str, int]]:
    files, dirs = _scan_files(folder)
    if class_index is None:
        class_index = {d.name: i for i, d in enumerate(dirs)}
    for f in _images_only(files, src, rejected):
        rejected.append((os.path.relpath(f.path, src), "file outside any class folder"))
    items: list[SourceImage] = []
    per_class: dict[str, int] = {}
    for d in dirs:
        if d.name not in class_index:
            raise UserError(
                f"{os.path.relpath(d.path, src)} is not a class of the training split; "
                f"split {split!r} must use the training class folders"
            )
        cfiles, cdirs = _scan_files(Path(d.path))
        cfiles = _images_only(cfiles, src, rejected)
        for sub in cdirs:
            rejected.append((os.path.relpath(sub.path, src), "folder inside a class folder (not searched)"))
        per_class[d.name] = len(cfiles)
        items += [_stat_item(f, src, class_index[d.name]) for f in cfiles]
    return items, per_class


def discover(src: Path, val_labels: Path | None, split_half: bool, seed: int, holdout: int = 0) -> SourcePlan:
    """Find the images of ``src``, their splits and labels (module docstring); ``holdout`` images per class
    move from train to a ``holdout`` split (:func:`holdout_indices`)."""
    if not src.exists():
        raise UserError(f"source folder {src} does not exist")
    if not src.is_dir():
        raise UserError(f"source {src} is not a folder")
    notes: list[str] = []
    pre: dict[str, list[tuple[str, str]]] = {}
    splits: dict[str, list[SourceImage]] = {}
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
                    raise UserError(f"was given but {folder} is laid out by class folders", key="val_labels")
                splits[d.name], _ = _class_tree(folder, src, index, d.name, pre[d.name])
        if val_labels is not None and "val" not in splits:
            raise UserError(f"was given but {src / 'val'} does not exist or holds no images", key="val_labels")
    else:
        if val_labels is not None:
            raise UserError(f"needs a flat {src / 'val'} folder beside {src / 'train'}", key="val_labels")
        classes, index = _class_folders(src, " (expected SRC/train/<class>/ or SRC/<class>/)")
        pre["train"] = []
        files, _ = _scan_files(src)
        for f in files:  # loose files beside class folders (name tables, readme) are not images to store
            if _is_image_name(f.name):
                pre["train"].append((os.path.relpath(f.path, src), "file outside any class folder"))
        items: list[SourceImage] = []
        per_class = {}
        for name in classes:
            cfiles, cdirs = _scan_files(src / name)
            cfiles = _images_only(cfiles, src, pre["train"])
            for sub in cdirs:
                pre["train"].append((os.path.relpath(sub.path, src), "folder inside a class folder (not searched)"))
            per_class[name] = len(cfiles)
            items += [_stat_item(f, src, index[name]) for f in cfiles]
        splits["train"] = items
    empty = [c for c in classes if per_class.get(c, 0) == 0]
    if split_half:
        if "test" in splits:
            raise UserError(f"makes a test split, but {src / 'test'} already exists", key="split_half")
        splits["train"], splits["test"] = _split_half(splits["train"], len(classes), seed)
        pre["test"] = []
    if holdout:
        if HOLDOUT_SPLIT in splits:
            raise UserError(f"makes a {HOLDOUT_SPLIT} split, but {src / HOLDOUT_SPLIT} already exists", key="holdout")
        train = splits["train"]
        keep, held = holdout_indices(np.array([it.label for it in train], np.int64), holdout, seed,
                                     class_names=classes)
        splits["train"], splits[HOLDOUT_SPLIT] = [train[i] for i in keep], [train[i] for i in held]
        pre[HOLDOUT_SPLIT] = []
    return SourcePlan(classes, splits, pre, empty, notes)


def holdout_indices(labels: np.ndarray, per_class: int, seed: int,
                    class_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) indices of ``labels``: ``per_class`` images of every class, drawn with ``seed``.

    Both index arrays are sorted, so each split keeps the source order.  A class with
    images must keep at least one for training; a UserError names the first that would not.
    """
    if per_class < 0:
        raise UserError(f"must be a number of images per class, got {per_class}", key="holdout")
    rng = np.random.default_rng([seed, 0x401D])
    held: list[np.ndarray] = []
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        if len(members) <= per_class:
            name = class_names[int(c)] if class_names else f"class {int(c)}"
            raise UserError(f"{per_class} images per class would leave none to train on in {name}, which has "
                            f"{len(members)}; choose a smaller holdout", key="holdout")
        held.append(rng.choice(members, per_class, replace=False))
    out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(labels)), out), out


def _split_half(items: list[SourceImage], num_classes: int, seed: int) -> tuple[list[SourceImage], list[SourceImage]]:
    """Half of each class (rounded up) to train, the rest to test (§6, Fall 2009), seeded."""
    rng = np.random.default_rng(seed)
    by_class: list[list[SourceImage]] = [[] for _ in range(num_classes)]
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
                rejected: list[tuple[str, str]], notes: list[str]) -> list[SourceImage]:
    files, _ = _scan_files(folder)
    if labels_file is not None:
        files = [f for f in files if Path(f.path).resolve() != labels_file.resolve()]
    files = _images_only(files, src, rejected)
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
                     labels_file: Path, folder: Path) -> list[SourceImage]:
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
