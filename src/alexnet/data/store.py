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

``manifest.json`` is written last (:mod:`alexnet.data.shards`) and removed before a
rerun of ``alexnet prepare`` rewrites anything; ``OUT/.prepare-in-progress.json`` is
present from the start of a ``prepare`` to its end.  A store is usable only when it
has a manifest and no such marker.  Opening a split checks, cheaply and every time,
each shard's size and array header and the labels against the manifest; the
checksums are checked by :func:`verify_store` (``alexnet prepare --verify``) and by
:func:`check_checksums` (training checks them itself for small stores).
Statistics: :mod:`alexnet.data.stats`.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
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
#: Present while ``alexnet prepare`` writes a store (and after it was interrupted): the store is not usable.
MARKER = ".prepare-in-progress.json"
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
        counts = [int(s["count"]) for s in meta["shards"]]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        for k, count in enumerate(counts):
            problem = shard_problem(self._folder, k, self._fmt, count, self._size)
            if problem:
                raise damaged(store.path, f"{name}/{shard_files(k, self._fmt)[0]}", problem)
        self.labels = _read_labels(store, meta, int(self._starts[-1]))
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
        path = self._folder.parent / self._meta["paths"]["file"]
        try:
            lines = path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise damaged(self._folder.parent, self._meta["paths"]["file"], f"cannot be read: {err}") from None
        if len(lines) != len(self):
            raise damaged(self._folder.parent, self._meta["paths"]["file"],
                          f"{len(lines)} lines for {len(self)} images")
        return lines


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
        if (self.path / MARKER).exists():
            raise UserError(f"store {self.path} is incomplete: `alexnet prepare` is writing it or was interrupted "
                            f"({MARKER} is present); rerun that `alexnet prepare` to finish it")
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
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
                raise damaged(self.path, meta["file"], f"cannot be read: {err}") from None
        return self._stats


# --------------------------------------------------------------------------- checks


def damaged(store: Path, what: str, problem: str) -> UserError:
    """The one error for a damaged store file: names it and the command that lists every problem."""
    return UserError(f"store {store}: {what} is damaged ({problem}); `alexnet prepare --verify {store}` checks "
                     f"every file, and rerunning the `alexnet prepare` that made it repairs it")


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from a .npy file's header, reading only the header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        return tuple(shape), dtype, f.tell()


def _npy_problem(path: Path, shape: tuple[int, ...] | None, dtype: Any) -> str | None:
    """Why a .npy file does not hold ``dtype`` of ``shape`` (None: any length) in full, else None."""
    try:
        got_shape, got_dtype, offset = _npy_header(path)
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as err:
        return f"not a readable array: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    if got_dtype != np.dtype(dtype) or len(got_shape) != (len(shape) if shape else 1) or (
            shape is not None and got_shape != shape):
        want = "(N,)" if shape is None else str(shape)
        return f"holds {got_dtype} {got_shape}, expected {np.dtype(dtype)} {want}"
    expected = offset + int(np.prod(got_shape, dtype=np.int64)) * got_dtype.itemsize
    if size != expected:
        return f"{size} bytes, expected {expected}: truncated or overwritten"
    return None


def shard_problem(folder: Path, index: int, fmt: str, count: int, size: int) -> str | None:
    """Why shard ``index`` does not hold ``count`` images of ``size`` (sizes and headers only), else None."""
    names = shard_files(index, fmt)
    if fmt == "npy":
        return _npy_problem(folder / names[0], (count, size, size, 3), np.uint8)
    problem = _npy_problem(folder / names[0], None, np.uint8) or _npy_problem(folder / names[1], (count + 1,), np.int64)
    if problem:
        return problem
    try:
        offsets = np.load(folder / names[1], allow_pickle=False)
        nbytes = _npy_header(folder / names[0])[0][0]
    except (OSError, ValueError) as err:
        return f"not readable: {err}"
    if count and (offsets[0] != 0 or offsets[-1] != nbytes or (np.diff(offsets) <= 0).any()):
        return f"its offsets do not cover the {nbytes} bytes of {names[0]}"
    return None


def _read_labels(store: "Store", meta: dict[str, Any], count: int) -> np.ndarray:
    file = meta["labels"]["file"]
    problem = _npy_problem(store.path / file, (count,), np.int64)
    if problem:
        raise damaged(store.path, file, problem)
    labels = np.load(store.path / file, allow_pickle=False)
    if count and (labels.min() < -1 or labels.max() >= store.num_classes):
        raise damaged(store.path, file, f"labels outside -1..{store.num_classes - 1}")
    return labels


def _checksum_jobs(store: "Store", splits: list[str] | None) -> list[tuple[Path, str, str]]:
    """(file, expected sha256, name) of every file of ``splits`` (default all) plus the statistics and tables."""
    out, manifest = store.path, store.manifest
    jobs: list[tuple[Path, str, str]] = []
    for split, meta in sorted(manifest["splits"].items()):
        if splits is not None and split not in splits:
            continue
        for shard in meta["shards"]:
            for name, digest in shard["files"].items():
                jobs.append((out / split / name, digest, f"{split}/{name}"))
        jobs.append((out / meta["labels"]["file"], meta["labels"]["sha256"], meta["labels"]["file"]))
        jobs.append((out / meta["paths"]["file"], meta["paths"]["sha256"], meta["paths"]["file"]))
    if manifest.get("stats"):
        jobs.append((out / manifest["stats"]["file"], manifest["stats"]["sha256"], manifest["stats"]["file"]))
    if splits is None:
        for name, digest in (manifest.get("tables") or {}).items():
            jobs.append((out / name, digest, name))
    return jobs


def _checksum_problems(jobs: list[tuple[Path, str, str]], threads: int | None) -> list[str]:
    def check(job: tuple[Path, str, str]) -> str | None:
        path, digest, what = job
        try:
            got = sha256_file(path)
        except OSError as err:
            return f"{what}: cannot be read ({err.strerror or err})"
        return None if got == digest else f"{what}: checksum mismatch (file is corrupt or was modified)"

    with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
        return [p for p in pool.map(check, jobs) if p]


def store_bytes(store: "Store", splits: list[str]) -> int:
    """Bytes of the shard files of ``splits`` (what checking their checksums reads)."""
    total = 0
    for split in splits:
        for shard in store.manifest["splits"][split]["shards"]:
            for name in shard["files"]:
                try:
                    total += (store.path / split / name).stat().st_size
                except OSError:
                    pass
    return total


def check_checksums(store: "Store", splits: list[str], *, threads: int | None = None) -> None:
    """A :func:`damaged` error for the first file of ``splits`` (or the statistics) whose sha256 is wrong."""
    problems = _checksum_problems(_checksum_jobs(store, splits), threads)
    if problems:
        what, _, problem = problems[0].partition(": ")
        more = f" ({len(problems) - 1} more files are damaged)" if len(problems) > 1 else ""
        raise damaged(store.path, what, problem + more)


#: ``verify_for_use(..., "auto")`` checks the checksums of the splits a run reads when they hold at most this much.
AUTO_VERIFY_BYTES = 2 << 30
VERIFY_MODES = ("auto", "checksums", "sizes")


def verify_for_use(store: "Store", splits: list[str], mode: str = "auto") -> None:
    """Before a long read of ``splits``: their checksums (``checksums``; ``auto``: when they hold at most
    :data:`AUTO_VERIFY_BYTES`; ``sizes``: none beyond the checks every opening makes)."""
    if mode not in VERIFY_MODES:
        raise UserError(f"unknown value {mode!r}; allowed: {', '.join(VERIFY_MODES)}", key="data.verify")
    if mode == "checksums" or (mode == "auto" and store_bytes(store, splits) <= AUTO_VERIFY_BYTES):
        check_checksums(store, splits)


def manifest_digest(store: "Store") -> str:
    """sha256 of the store's manifest.json: names its exact contents (every file's checksum)."""
    return sha256_file(store.path / MANIFEST)


def verify_store(out: Path, *, threads: int | None = None) -> list[str]:
    """Check every file of a store against the manifest's checksums and counts.

    Returns a list of problems, one sentence each; an empty list means the store is intact.
    """
    out = Path(out)
    try:
        store = Store(out)
    except UserError as err:
        return [str(err)]
    problems: list[str] = []
    for split, meta in sorted(store.manifest["splits"].items()):
        total = 0
        for k, shard in enumerate(meta["shards"]):
            total += int(shard["count"])
            problem = shard_problem(out / split, k, store.format, int(shard["count"]), store.image_size)
            if problem:
                problems.append(f"{split}/{shard_files(k, store.format)[0]}: {problem}")
        if total != meta["count"]:
            problems.append(f"split {split}: shards hold {total} images but the manifest says {meta['count']}")
        problem = _npy_problem(out / meta["labels"]["file"], (int(meta["count"]),), np.int64)
        if problem:
            problems.append(f"{meta['labels']['file']}: {problem}")
    return problems + _checksum_problems(_checksum_jobs(store, None), threads)
