"""Writing stores: shards with their sidecars, then labels, statistics, tables and the manifest.

A shard's data files are written first and its sidecar (``shard-NNNNN.json``,
with the checksums) last, so a sidecar marks a finished shard; the manifest is
written last of all and marks a finished store (layout: :mod:`alexnet.data.store`).
Every file is written atomically and nothing in it depends on the time or the
machine's state, so an interrupted and resumed :func:`alexnet.data.prepare.prepare`
produces the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from alexnet.data.stats import STATS_UNITS, StatsPartial, stats_from_partial, stats_partial, write_stats
from alexnet.data.store import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_SHARD_SIZE,
    FORMAT_VERSION,
    FORMATS,
    MANIFEST,
    STORE_KIND,
    Store,
    load_shard,
    shard_files,
    shard_name,
)
from alexnet.errors import UserError
from alexnet.runtime import atomic_text, atomic_write, sha256_file

def _write_npy(path: Path, array: np.ndarray) -> str:
    return atomic_write(path, lambda f: np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False))


def _write_text(path: Path, text: str) -> str:
    return atomic_text(path, text)


def _write_json(path: Path, obj: Any) -> str:
    return _write_text(path, json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n")



def encode_jpeg_shard(images: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode (N, S, S, 3) uint8 images as JPEGs: one concatenated byte array + offsets (N+1)."""
    from PIL import Image

    blobs = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality)
        blobs.append(buf.getvalue())
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8) if blobs else np.zeros(0, np.uint8)
    return data, offsets


def write_shard(
    folder: Path,
    index: int,
    images: np.ndarray,
    labels: Sequence[int],
    paths: Sequence[str],
    *,
    fmt: str = "npy",
    quality: int = DEFAULT_JPEG_QUALITY,
    key: str = "",
    rejected: Sequence[Sequence[str]] = (),
    notes: Sequence[Sequence[str]] = (),
) -> dict[str, Any]:
    """Write one shard's data files and then its sidecar (the commit record); return the sidecar.

    ``key`` identifies the inputs and options the shard was made from, so that a
    resumed run can tell a finished shard from a stale one.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown store format {fmt!r}; allowed: {', '.join(FORMATS)}")
    images = np.asarray(images)
    names = shard_files(index, fmt)
    if fmt == "npy":
        checks = {names[0]: _write_npy(folder / names[0], images)}
    else:
        data, offsets = encode_jpeg_shard(images, quality)
        checks = {names[0]: _write_npy(folder / names[0], data), names[1]: _write_npy(folder / names[1], offsets)}
    sidecar = {
        "version": FORMAT_VERSION,
        "key": key,
        "count": int(len(images)),
        "files": checks,
        "labels": [int(x) for x in labels],
        "paths": list(paths),
        "rejected": [list(r) for r in rejected],
        "notes": [list(n) for n in notes],
    }
    _write_json(folder / f"{shard_name(index)}.json", sidecar)
    return sidecar


def load_valid_sidecar(folder: Path, index: int, key: str | None) -> dict[str, Any] | None:
    """The sidecar of a finished shard whose files still match their checksums, else None."""
    try:
        sidecar = json.loads((folder / f"{shard_name(index)}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or sidecar.get("version") != FORMAT_VERSION:
        return None
    if key is not None and sidecar.get("key") != key:
        return None
    files = sidecar.get("files")
    if not isinstance(files, dict) or not files:
        return None
    for name, digest in files.items():
        try:
            if sha256_file(folder / name) != digest:
                return None
        except OSError:
            return None
    return sidecar


# --------------------------------------------------------------------------- finishing a store


def _tsv_field(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def finalize_store(
    out: Path,
    *,
    image_size: int,
    fmt: str,
    quality: int,
    classes: Sequence[tuple[str, str]],
    sidecars: dict[str, list[dict[str, Any]]],
    source: str,
    options: dict[str, Any],
    split_half: dict[str, Any] | None,
    stats_split: str = "train",
    partials: Callable[[str, list[int]], Iterable[StatsPartial]] | None = None,
) -> dict[str, Any]:
    """Write labels, paths, statistics, tables and finally the manifest; return the manifest.

    ``sidecars[split]`` lists the shard sidecars in shard order.  ``partials``
    (optional) maps (split, shard indices) to per-shard :class:`StatsPartial`s,
    which lets the caller compute them in parallel; by default shards are read
    here, one at a time through memory maps.
    """
    out = Path(out)
    splits_meta: dict[str, Any] = {}
    rejected_lines = ["path\treason"]
    notes_lines = ["path\tnote"]
    for split, cars in sidecars.items():
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        labels = np.asarray([lab for car in cars for lab in car["labels"]], dtype=np.int64)
        paths = [p for car in cars for p in car["paths"]]
        labels_sha = _write_npy(folder / "labels.npy", labels)
        paths_sha = _write_text(folder / "paths.txt", "".join(_tsv_field(p) + "\n" for p in paths))
        shards = [
            {"name": shard_name(i), "count": int(car["count"]), "files": dict(sorted(car["files"].items()))}
            for i, car in enumerate(cars)
        ]
        splits_meta[split] = {
            "count": int(len(labels)),
            "shards": shards,
            "labels": {"file": f"{split}/labels.npy", "sha256": labels_sha},
            "paths": {"file": f"{split}/paths.txt", "sha256": paths_sha},
            "rejected": int(sum(len(car["rejected"]) for car in cars)),
        }
        for car in cars:
            rejected_lines += [f"{_tsv_field(p)}\t{_tsv_field(r)}" for p, r in car["rejected"]]
            notes_lines += [f"{_tsv_field(p)}\t{_tsv_field(n)}" for p, n in car["notes"]]

    stats_meta = None
    if stats_split in sidecars and splits_meta[stats_split]["count"] > 0:
        indices = list(range(len(sidecars[stats_split])))
        if partials is None:
            part_iter: Iterable[StatsPartial] = (
                stats_partial(arr, image_size)
                for arr in _iter_shard_arrays(out / stats_split, indices, fmt)
            )
        else:
            part_iter = partials(stats_split, indices)
        total = None
        for part in part_iter:
            total = part if total is None else total.merge(part)
        assert total is not None
        stats = stats_from_partial(total)
        stats_meta = {
            "file": "stats.npz",
            "sha256": write_stats(out / "stats.npz", stats, stats_split),
            "split": stats_split,
            "count": stats.count,
            "units": STATS_UNITS,
        }
    elif (out / "stats.npz").exists():
        (out / "stats.npz").unlink()

    class_lines = ["index\twnid\tname"] + [f"{i}\t{_tsv_field(w)}\t{_tsv_field(n)}" for i, (w, n) in enumerate(classes)]
    tables = {
        "classes.tsv": _write_text(out / "classes.tsv", "\n".join(class_lines) + "\n"),
        "rejected.tsv": _write_text(out / "rejected.tsv", "\n".join(rejected_lines) + "\n"),
        "notes.tsv": _write_text(out / "notes.tsv", "\n".join(notes_lines) + "\n"),
    }
    manifest = {
        "kind": STORE_KIND,
        "format_version": FORMAT_VERSION,
        "image_size": int(image_size),
        "format": fmt,
        "jpeg_quality": int(quality) if fmt == "jpeg" else None,
        "layout": "uint8 (N, S, S, 3) RGB, HWC, shards in split order",
        "source": source,
        "options": options,
        "split_half": split_half,
        "classes": [[w, n] for w, n in classes],
        "num_classes": len(classes),
        "splits": splits_meta,
        "stats": stats_meta,
        "tables": tables,
    }
    _write_json(out / MANIFEST, manifest)
    return manifest


def _iter_shard_arrays(folder: Path, indices: Iterable[int], fmt: str) -> Iterable[np.ndarray]:
    for i in indices:
        yield load_shard(folder, i, fmt)


def write_store(
    out: Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    classes: list[tuple[str, str]],
    *,
    stats_split: str = "train",
    paths: dict[str, list[str]] | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    fmt: str = "npy",
    quality: int = DEFAULT_JPEG_QUALITY,
    source: str = "(in memory)",
) -> "Store":
    """Write a store straight from in-memory uint8 arrays (N, S, S, 3) and integer labels.

    Used by tests, built-in demo data and dataset importers; the files are the same
    as :func:`alexnet.data.prepare.prepare` writes.  ``paths`` gives a name per image
    (default ``<split>/<index>``).  Statistics come from ``stats_split`` when present.
    """
    out = Path(out)
    if shard_size < 1:
        raise UserError(f"shard size must be at least 1, got {shard_size}")
    if fmt not in FORMATS:
        raise UserError(f"unknown store format {fmt!r}; allowed: {', '.join(FORMATS)}")
    image_size = None
    for name, (images, labels) in splits.items():
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
            raise UserError(f"split {name!r}: images must be uint8 (N, S, S, 3), got {images.dtype} {images.shape}")
        if len(labels) != len(images):
            raise UserError(f"split {name!r}: {len(images)} images but {len(labels)} labels")
        if image_size is not None and images.shape[1] != image_size:
            raise UserError(f"split {name!r}: image size {images.shape[1]} differs from {image_size}")
        image_size = images.shape[1]
        labs = np.asarray(labels, dtype=np.int64)
        if len(labs) and (labs.min() < -1 or labs.max() >= len(classes)):
            raise UserError(f"split {name!r}: labels must lie in 0..{len(classes) - 1} (or -1 for unlabelled)")
    if image_size is None:
        raise UserError("write_store needs at least one split")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create store folder {out}: {err.strerror or err}") from err
    sidecars: dict[str, list[dict[str, Any]]] = {}
    for name, (images, labels) in splits.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        names = paths[name] if paths and name in paths else [f"{name}/{i}" for i in range(len(images))]
        if len(names) != len(images):
            raise UserError(f"split {name!r}: {len(images)} images but {len(names)} paths")
        cars = []
        for k, start in enumerate(range(0, max(len(images), 1), shard_size)):
            stop = min(start + shard_size, len(images))
            cars.append(
                write_shard(folder, k, np.asarray(images[start:stop]), np.asarray(labels)[start:stop].tolist(),
                            names[start:stop], fmt=fmt, quality=quality, key="memory")
            )
        sidecars[name] = cars
    finalize_store(
        out,
        image_size=image_size,
        fmt=fmt,
        quality=quality,
        classes=list(classes),
        sidecars=sidecars,
        source=source,
        options={"size": image_size, "shard_size": shard_size, "format": fmt},
        split_half=None,
        stats_split=stats_split,
    )
    return Store(out)
