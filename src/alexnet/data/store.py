"""The prepared-image store that training reads: its layout, and reading and checking it.

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

``manifest.json`` is written last (:mod:`alexnet.data.shards`): its presence marks
a complete store.  Statistics: :mod:`alexnet.data.stats`.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data.stats import Stats
from alexnet.errors import UserError
from alexnet.runtime import sha256_file

FORMAT_VERSION = 1
STORE_KIND = "alexnet-store"
FORMATS = ("npy", "jpeg")
DEFAULT_SHARD_SIZE = 512  # 512 x 196,608 B = 96 MiB per 256x256 shard
DEFAULT_JPEG_QUALITY = 95
STATS_UNITS = "RGB pixel values in 0..255 units (uint8 scale); covariance over all pixels of the split"
MANIFEST = "manifest.json"
#: Where errors are reported, in order of preference, when no split is named.
REPORTED_SPLITS = ("val", "test")
#: Training images set aside for decisions (``alexnet prepare --holdout N``); never reported on.
HOLDOUT_SPLIT = "holdout"


def shard_name(index: int) -> str:
    """Base name of shard ``index`` (``shard-00042``)."""
    return f"shard-{index:05d}"


def shard_files(index: int, fmt: str) -> list[str]:
    """File names that hold shard ``index``'s images in format ``fmt``."""
    base = shard_name(index)
    return [f"{base}.npy"] if fmt == "npy" else [f"{base}.jpeg.npy", f"{base}.offsets.npy"]


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

    def evaluation_split(self, name: str | None = None) -> str:
        """The split errors are reported on: ``name`` when given (it must exist), else ``val``, else ``test``."""
        if name is not None:
            self.split(name)  # a UserError naming the available splits
            return name
        for candidate in REPORTED_SPLITS:
            if candidate in self._splits:
                return candidate
        raise UserError(f"store {self.path} has no {' or '.join(REPORTED_SPLITS)} split; name one", key="split")

    def decision_split(self, name: str = "auto") -> str | None:
        """The split that decides learning-rate drops, early stopping and the best checkpoint.

        ``auto``: ``holdout`` (training images set aside) when the store has one, else the first
        reported split (``val``, else ``test``: then decisions and reported errors share images, and
        the caller should say so), else None (only training error is left).  Any other name must exist.
        """
        if name != "auto":
            self.split(name)  # a UserError naming the available splits
            return name
        for candidate in (HOLDOUT_SPLIT, *REPORTED_SPLITS):
            if candidate in self._splits:
                return candidate
        return None

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
