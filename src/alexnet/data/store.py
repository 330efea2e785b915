"""The prepared-image store that training reads (issue 3).

On-disk layout of a store folder ``OUT``::

    OUT/manifest.json        format version, image size, splits, shard list with sha256,
                             class table, source path, options, split-half seed
    OUT/classes.tsv          index, wnid, human-readable name (index = sorted wnid position)
    OUT/stats.npz            training-set statistics (mean image, RGB covariance, PCA), 0-255 units
    OUT/rejected.tsv         source images that could not be used, with the reason
    OUT/notes.tsv            images that were used but are worth a look (upscaled, CMYK, misnamed)
    OUT/<split>/shard-00000.npy       uint8 (N, S, S, 3), memory-mappable  (format "npy")
    OUT/<split>/shard-00000.jpeg.npy  uint8 (bytes,) concatenated JPEGs    (format "jpeg")
    OUT/<split>/shard-00000.offsets.npy int64 (N + 1,) byte offsets        (format "jpeg")
    OUT/<split>/shard-00000.json      per-shard sidecar: checksums, labels, source paths
    OUT/<split>/labels.npy            int64 (N,) class index of every image (-1 = unlabelled)
    OUT/<split>/paths.txt             source path of every image, relative to the source root

Every file is written atomically (temporary file in the same folder, fsync,
``os.replace``) and nothing in it depends on the time or the machine's state, so
an interrupted and resumed :func:`alexnet.data.prepare.prepare` produces the same bytes
as an uninterrupted run.  ``manifest.json`` is written last: its presence marks a
complete store.

Statistics are exact: the mean image and channel sums are integer sums kept in
float64 (exact below 2**53), the RGB second moments are integer sums computed in
float64 chunks small enough to be exact and accumulated as Python integers, so the
result does not depend on the order in which shards are visited.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Sequence

import numpy as np

from alexnet.errors import UserError

FORMAT_VERSION = 1
STORE_KIND = "alexnet-store"
FORMATS = ("npy", "jpeg")
DEFAULT_SHARD_SIZE = 512  # 512 x 196,608 B = 96 MiB per 256x256 shard
DEFAULT_JPEG_QUALITY = 95
STATS_UNITS = "RGB pixel values in 0..255 units (uint8 scale); covariance over all pixels of the split"
MANIFEST = "manifest.json"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed so that stats.npz is byte-reproducible
_COV_CHUNK_PIXELS = 1 << 20  # float64 sums of 2**20 products <= 255**2 are exact


# --------------------------------------------------------------------------- writing helpers


class _HashingWriter(io.RawIOBase):
    """File-like object that writes through to ``fp`` and hashes what passes."""

    def __init__(self, fp: BinaryIO) -> None:
        super().__init__()
        self._fp = fp
        self.sha = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self._fp.write(view)
        return len(view)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> str:
    """Write ``path`` atomically via ``write(fileobj)``; return the sha256 hex digest.

    The data go to a temporary file in the same folder, are fsync'ed and then
    ``os.replace``'d onto ``path``, so a reader never sees a partial file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as raw:
            hasher = _HashingWriter(raw)
            write(hasher)  # type: ignore[arg-type]
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return hasher.sha.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_npy(path: Path, array: np.ndarray) -> str:
    return atomic_write(path, lambda f: np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False))


def _write_text(path: Path, text: str) -> str:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _write_json(path: Path, obj: Any) -> str:
    return _write_text(path, json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file, read in 4 MiB chunks (hashlib releases the GIL)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return sha.hexdigest()
            sha.update(block)


def shard_name(index: int) -> str:
    """Base name of shard ``index`` (``shard-00042``)."""
    return f"shard-{index:05d}"


def shard_files(index: int, fmt: str) -> list[str]:
    """File names that hold shard ``index``'s images in format ``fmt``."""
    base = shard_name(index)
    return [f"{base}.npy"] if fmt == "npy" else [f"{base}.jpeg.npy", f"{base}.offsets.npy"]


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


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stats:
    """Training-set statistics (§2 mean subtraction, §4.1 PCA lighting), 0-255 pixel units."""

    mean_image: np.ndarray  # float32 (S, S, 3)
    channel_mean: np.ndarray  # float32 (3,)
    covariance: np.ndarray  # float64 (3, 3), population covariance of RGB pixel values
    eigenvalues: np.ndarray  # float64 (3,), descending
    eigenvectors: np.ndarray  # float64 (3, 3), column i is p_i
    count: int  # images


@dataclass
class StatsPartial:
    """Exact integer sums over some images; partials merge in any order to the same result."""

    count: int
    pixel_sum: np.ndarray  # float64 (S, S, 3), integer-valued (exact)
    second: list[list[int]]  # sum over pixels of x_i * x_j, Python ints (exact)

    def merge(self, other: "StatsPartial") -> "StatsPartial":
        return StatsPartial(
            self.count + other.count,
            self.pixel_sum + other.pixel_sum,
            [[a + b for a, b in zip(r, s)] for r, s in zip(self.second, other.second)],
        )


def stats_partial(images: np.ndarray, image_size: int) -> StatsPartial:
    """Sums over a batch of uint8 images (N, S, S, 3), streamed in small float64 chunks."""
    pixel_sum = np.zeros((image_size, image_size, 3), np.float64)
    second = np.zeros((3, 3), dtype=object)
    per_chunk = max(1, _COV_CHUNK_PIXELS // (image_size * image_size))
    for start in range(0, len(images), per_chunk):
        chunk = np.asarray(images[start : start + per_chunk])
        pixel_sum += chunk.sum(axis=0, dtype=np.float64)
        x = chunk.reshape(-1, 3).astype(np.float64)
        second += (x.T @ x).astype(np.int64).astype(object)
    return StatsPartial(int(len(images)), pixel_sum, [[int(v) for v in row] for row in second])


def stats_from_partial(part: StatsPartial) -> Stats:
    """Mean image, channel means, covariance and its eigen-decomposition from exact sums."""
    if part.count == 0:
        raise UserError("cannot compute statistics of an empty training split")
    size = part.pixel_sum.shape[0]
    pixels = part.count * size * size
    channel_sum = [int(round(v)) for v in part.pixel_sum.sum(axis=(0, 1))]
    cov = np.empty((3, 3), np.float64)
    for i in range(3):
        for j in range(3):  # exact integer numerator, one correctly rounded division
            cov[i, j] = (pixels * part.second[i][j] - channel_sum[i] * channel_sum[j]) / (pixels * pixels)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    for k in range(3):  # deterministic sign: largest-magnitude component positive
        if vectors[np.argmax(np.abs(vectors[:, k])), k] < 0:
            vectors[:, k] = -vectors[:, k]
    return Stats(
        mean_image=(part.pixel_sum / part.count).astype(np.float32),
        channel_mean=(np.asarray(channel_sum, np.float64) / pixels).astype(np.float32),
        covariance=cov,
        eigenvalues=values.astype(np.float64),
        eigenvectors=np.ascontiguousarray(vectors, dtype=np.float64),
        count=part.count,
    )


def _write_stats(path: Path, stats: Stats, split: str) -> str:
    arrays = {
        "mean_image": stats.mean_image,
        "channel_mean": stats.channel_mean,
        "covariance": stats.covariance,
        "eigenvalues": stats.eigenvalues,
        "eigenvectors": stats.eigenvectors,
        "count": np.asarray(stats.count, np.int64),
        "split": np.asarray(split),
        "units": np.asarray(STATS_UNITS),
    }

    def write(f: BinaryIO) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, arr in arrays.items():
                with zf.open(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE), "w") as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
        f.write(buf.getvalue())

    return atomic_write(path, write)


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
            "sha256": _write_stats(out / "stats.npz", stats, stats_split),
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


def load_shard(folder: Path, index: int, fmt: str) -> np.ndarray:
    """All images of one shard as uint8 (N, S, S, 3) (a memory map for format npy)."""
    names = shard_files(index, fmt)
    if fmt == "npy":
        return np.load(folder / names[0], mmap_mode="r", allow_pickle=False)
    data = np.load(folder / names[0], mmap_mode="r", allow_pickle=False)
    offsets = np.load(folder / names[1], allow_pickle=False)
    return np.stack([_decode_jpeg(data[offsets[k] : offsets[k + 1]]) for k in range(len(offsets) - 1)]) if len(
        offsets
    ) > 1 else np.zeros((0, 0, 0, 3), np.uint8)


def _decode_jpeg(blob: np.ndarray) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob.tobytes())) as im:
        return np.asarray(im.convert("RGB"))


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


# --------------------------------------------------------------------------- reading


class StoreSplit:
    """One split of a store: labels in memory, images read lazily from memory-mapped shards."""

    name: str
    labels: np.ndarray

    def __init__(self, store: "Store", name: str, meta: dict[str, Any]) -> None:
        self.name = name
        self._folder = store.path / name
        self._fmt = store.format
        self._size = store.image_size
        self._meta = meta
        self.labels = np.load(store.path / meta["labels"]["file"], allow_pickle=False).astype(np.int64, copy=False)
        counts = [int(s["count"]) for s in meta["shards"]]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self._starts[-1] != len(self.labels):
            raise UserError(f"store {store.path}: split {name!r} has {len(self.labels)} labels but shards hold {self._starts[-1]} images")
        self._shards: dict[int, Any] = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getstate__(self) -> dict[str, Any]:  # memory maps are reopened in each process
        state = self.__dict__.copy()
        state["_shards"] = {}
        return state

    def _shard(self, k: int) -> Any:
        got = self._shards.get(k)
        if got is None:
            names = shard_files(k, self._fmt)
            if self._fmt == "npy":
                got = np.load(self._folder / names[0], mmap_mode="r", allow_pickle=False)
            else:
                got = (np.load(self._folder / names[0], mmap_mode="r", allow_pickle=False),
                       np.load(self._folder / names[1], allow_pickle=False))
            self._shards[k] = got
        return got

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Images ``indices`` as uint8 (B, S, S, 3), in the given order.

        Indices are grouped by shard and read in ascending order within each shard,
        so sorted and random index sets both touch each page once.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"split {self.name!r}: index out of range 0..{n - 1}")
        out = np.empty((idx.size, self._size, self._size, 3), np.uint8)
        if not idx.size:
            return out
        shard_of = np.searchsorted(self._starts, idx, side="right") - 1
        order = np.lexsort((idx, shard_of))
        bounds = np.flatnonzero(np.diff(shard_of[order])) + 1
        for group in np.split(order, bounds):
            k = int(shard_of[group[0]])
            local = idx[group] - self._starts[k]
            shard = self._shard(k)
            if self._fmt == "npy":
                out[group] = shard[local]
            else:
                data, offsets = shard
                for pos, j in zip(group, local):
                    out[pos] = _decode_jpeg(data[offsets[j] : offsets[j + 1]])
        return out

    def paths(self) -> list[str]:
        """Source path of each image, relative to the source folder (for reports and predictions)."""
        text = (self._folder.parent / self._meta["paths"]["file"]).read_text("utf-8")
        return text.splitlines()


class Store:
    """A prepared store folder (see the module docstring for the layout)."""

    path: Path
    image_size: int
    classes: list[tuple[str, str]]
    num_classes: int

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not self.path.is_dir():
            raise UserError(f"store {self.path} does not exist (run `alexnet prepare SRC {self.path}` first)")
        if not manifest_path.is_file():
            raise UserError(f"{self.path} is not a finished store: {MANIFEST} is missing (run or resume `alexnet prepare`)")
        try:
            manifest = json.loads(manifest_path.read_text("utf-8"))
        except (OSError, ValueError) as err:
            raise UserError(f"store manifest {manifest_path} cannot be read: {err}") from err
        if not isinstance(manifest, dict) or manifest.get("kind") != STORE_KIND:
            raise UserError(f"{manifest_path} is not an alexnet store manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise UserError(
                f"store {self.path} has format version {manifest.get('format_version')!r}; this program reads version {FORMAT_VERSION}"
            )
        try:
            self.image_size = int(manifest["image_size"])
            self.format = str(manifest["format"])
            self.classes = [(str(w), str(n)) for w, n in manifest["classes"]]
            self._splits = dict(manifest["splits"])
            for meta in self._splits.values():
                meta["shards"], meta["labels"]["file"], meta["paths"]["file"]  # noqa: B018 - shape check
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"store manifest {manifest_path} is malformed: missing or bad field {err}") from err
        if self.format not in FORMATS:
            raise UserError(f"store {self.path} has unknown format {self.format!r}")
        self.num_classes = len(self.classes)
        self.manifest = manifest
        self._stats: Stats | None = None

    def splits(self) -> list[str]:
        """Names of the splits in this store (e.g. ``['test', 'train']``), sorted."""
        return sorted(self._splits)

    def split(self, name: str) -> StoreSplit:
        """The split ``name``; :class:`UserError` naming the available ones if absent."""
        if name not in self._splits:
            raise UserError(f"store {self.path} has no split {name!r}; available: {', '.join(self.splits()) or 'none'}")
        return StoreSplit(self, name, self._splits[name])

    def stats(self) -> Stats:
        """Training-set statistics from ``stats.npz`` (0-255 pixel units)."""
        if self._stats is None:
            meta = self.manifest.get("stats")
            if not meta:
                raise UserError(f"store {self.path} has no statistics (it has no training split)")
            try:
                with np.load(self.path / meta["file"], allow_pickle=False) as z:
                    self._stats = Stats(
                        mean_image=z["mean_image"],
                        channel_mean=z["channel_mean"],
                        covariance=z["covariance"],
                        eigenvalues=z["eigenvalues"],
                        eigenvectors=z["eigenvectors"],
                        count=int(z["count"]),
                    )
            except (OSError, KeyError, ValueError) as err:
                raise UserError(f"store statistics {self.path / meta['file']} cannot be read: {err}") from err
        return self._stats


# --------------------------------------------------------------------------- verification


def verify_store(out: Path, *, threads: int | None = None) -> list[str]:
    """Check every file of a store against the manifest's checksums and counts.

    Returns a list of problems, one sentence each; an empty list means the store is intact.
    """
    out = Path(out)
    try:
        store = Store(out)
    except UserError as err:
        return [str(err)]
    manifest = store.manifest
    jobs: list[tuple[Path, str, str]] = []  # (file, expected sha, what)
    problems: list[str] = []
    for split, meta in sorted(manifest["splits"].items()):
        total = 0
        for k, shard in enumerate(meta["shards"]):
            total += int(shard["count"])
            for name, digest in shard["files"].items():
                jobs.append((out / split / name, digest, f"{split}/{name}"))
            problems += _check_shard_shape(out / split, k, store.format, int(shard["count"]), store.image_size)
        if total != meta["count"]:
            problems.append(f"split {split}: shards hold {total} images but the manifest says {meta['count']}")
        jobs.append((out / meta["labels"]["file"], meta["labels"]["sha256"], meta["labels"]["file"]))
        jobs.append((out / meta["paths"]["file"], meta["paths"]["sha256"], meta["paths"]["file"]))
        try:
            n_labels = len(np.load(out / meta["labels"]["file"], mmap_mode="r", allow_pickle=False))
            if n_labels != meta["count"]:
                problems.append(f"split {split}: labels.npy has {n_labels} labels but the split has {meta['count']} images")
        except (OSError, ValueError):
            pass  # reported by the checksum pass
    if manifest.get("stats"):
        jobs.append((out / manifest["stats"]["file"], manifest["stats"]["sha256"], manifest["stats"]["file"]))
    for name, digest in (manifest.get("tables") or {}).items():
        jobs.append((out / name, digest, name))

    def check(job: tuple[Path, str, str]) -> str | None:
        path, digest, what = job
        try:
            got = sha256_file(path)
        except OSError as err:
            return f"{what}: cannot be read ({err.strerror or err})"
        return None if got == digest else f"{what}: checksum mismatch (file is corrupt or was modified)"

    with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
        problems += [p for p in pool.map(check, jobs) if p]
    return problems


def _check_shard_shape(folder: Path, index: int, fmt: str, count: int, size: int) -> list[str]:
    names = shard_files(index, fmt)
    try:
        if fmt == "npy":
            arr = np.load(folder / names[0], mmap_mode="r", allow_pickle=False)
            if arr.shape != (count, size, size, 3) or arr.dtype != np.uint8:
                return [f"{folder.name}/{names[0]}: holds {arr.dtype} {arr.shape}, expected uint8 {(count, size, size, 3)}"]
        else:
            offsets = np.load(folder / names[1], allow_pickle=False)
            if len(offsets) != count + 1:
                return [f"{folder.name}/{names[1]}: {len(offsets) - 1} images, expected {count}"]
    except (OSError, ValueError) as err:
        return [f"{folder.name}/{names[0]}: cannot be read as an array ({err})"]
    return []
