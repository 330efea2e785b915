"""The last hidden layer's activity for every image of a split (§6.1, Figure 4 right).

``extract_features`` runs a checkpoint in eval mode over the centre patch of
every image and writes, into one folder::

    DIR/features.npy   float32 (N, D), memory-mapped (np.lib.format.open_memmap); D = fc7 units
    DIR/index.npy      int64 (N,) the image's index in the store split (row i = image index[i])
    DIR/labels.npy     int64 (N,) class of each row (-1 = unlabelled)
    DIR/paths.txt      source path of each row, one a line
    DIR/features.json  sidecar: checkpoint fingerprint (sha256 of the weights), store
                       fingerprint (sha256 of its manifest), split, layer, shape, complete
    DIR/progress.json  rows done so far; written after the rows themselves are flushed

An interrupted extraction resumes at the recorded row: the rows before it are
on disk and the ones after it are recomputed.  A folder written from another
checkpoint or another store is refused rather than silently mixed.

Scale note (facts.md, §4.2): PyTorch's inverted dropout makes fc7 activities
twice what the paper's "multiply by 0.5 at test time" network would output.
Euclidean neighbours are unchanged by a common scale, so retrieval is the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.errors import UserError
from alexnet.runtime import atomic_text

KIND = "alexnet-features"
FORMAT = 1
LAYER = "fc7"
SIDECAR = "features.json"
PROGRESS = "progress.json"


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def store_fingerprint(store: Any) -> str:
    """sha256 of a store's manifest (which holds the sha256 of every shard)."""
    return hashlib.sha256((Path(store.path) / "manifest.json").read_bytes()).hexdigest()


@dataclass
class FeatureSet:
    """A finished (or partial) feature folder, opened read-only and memory-mapped."""

    path: Path
    meta: dict[str, Any]
    features: np.ndarray
    index: np.ndarray
    labels: np.ndarray

    @classmethod
    def open(cls, path: str | Path, *, allow_partial: bool = False) -> "FeatureSet":
        path = Path(path)
        side = path / SIDECAR
        if not side.is_file():
            raise UserError(f"{path} is not a feature folder ({SIDECAR} is missing; write one with `alexnet features`)")
        try:
            meta = json.loads(side.read_text("utf-8"))
        except ValueError as err:
            raise UserError(f"{side} cannot be read: {err}") from None
        if meta.get("kind") != KIND:
            raise UserError(f"{side} is not an alexnet feature sidecar")
        done = rows_done(path)
        if done < meta["count"] and not allow_partial:
            raise UserError(
                f"features in {path} are incomplete ({done} of {meta['count']} rows); "
                f"rerun `alexnet features` with the same --out to finish them"
            )
        try:
            feats = np.load(path / "features.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UserError(f"{path / 'features.npy'} cannot be read: {err}") from None
        if feats.shape != (meta["count"], meta["dim"]) or feats.dtype != np.float32:
            raise UserError(f"{path / 'features.npy'} holds {feats.dtype} {feats.shape}, expected float32 "
                            f"{(meta['count'], meta['dim'])}")
        index = np.load(path / "index.npy", allow_pickle=False)
        labels = np.load(path / "labels.npy", allow_pickle=False)
        return cls(path, meta, feats, index, labels)

    def __len__(self) -> int:
        return int(self.meta["count"])

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def fingerprint(self) -> str:
        return str(self.meta["checkpoint_sha256"])

    def paths(self) -> list[str]:
        return (self.path / "paths.txt").read_text("utf-8").splitlines()

    def store(self) -> Any:
        from alexnet.data.store import Store

        return Store(self.meta["store"])

    def images(self, rows: np.ndarray) -> np.ndarray:
        """The stored uint8 images behind ``rows`` (reads the store recorded in the sidecar)."""
        return self.store().split(self.meta["split"]).read(self.index[np.asarray(rows)])


def rows_done(path: Path) -> int:
    try:
        return int(json.loads((Path(path) / PROGRESS).read_text("utf-8"))["rows_done"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def check_same_model(a: FeatureSet, b: FeatureSet) -> None:
    """UserError unless two feature sets come from the same weights (their sidecar fingerprints)."""
    if a.fingerprint != b.fingerprint:
        raise UserError(
            f"features in {a.path} and {b.path} come from different checkpoints "
            f"({a.meta.get('checkpoint')} sha256 {a.fingerprint[:12]} vs {b.meta.get('checkpoint')} "
            f"sha256 {b.fingerprint[:12]}); extract both with the same checkpoint"
        )
    if a.dim != b.dim:
        raise UserError(f"features in {a.path} are {a.dim}-d but those in {b.path} are {b.dim}-d")


def default_split(store: Any) -> str:
    return next((s for s in ("train", "val", "test") if s in store.splits()), store.splits()[0])


@torch.no_grad()
def extract_features(
    checkpoint: str | Path,
    store_path: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    batch_size: int = 128,
    limit: int | None = None,
    device: str = "auto",
    max_rows: int | None = None,
    progress: bool = False,
) -> FeatureSet:
    """fc7 activity of every image (the first ``limit`` if given) of ``split``, resumable.

    Resuming with the same ``batch_size`` gives bit-identical rows (the same batches are formed).

    ``max_rows`` stops after that many rows in total (simulates an interruption; tests).
    """
    from alexnet.data.store import Store
    from alexnet.inference.trained import TrainedRun

    if batch_size < 1:
        raise UserError(f"must be at least 1, got {batch_size}", key="batch_size")
    run = TrainedRun.open(checkpoint, device=device)
    model = run.model
    store = Store(store_path)
    split = split or default_split(store)
    part = store.split(split)
    n = len(part) if limit is None else min(int(limit), len(part))
    if n < 1:
        raise UserError(f"split {split!r} of {store.path} has no images to extract")
    dim = model.spec.fc_units
    meta = {
        "kind": KIND, "format": FORMAT, "layer": LAYER, "patch": "centre",
        "checkpoint": str(run.path.resolve()), "checkpoint_sha256": weights_fingerprint(model),
        "model_spec": model.spec.to_dict(), "mean": run.mean_source, "store": str(Path(store.path).resolve()),
        "store_sha256": store_fingerprint(store), "split": split, "count": n, "dim": dim,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    side = out / SIDECAR
    feats_path = out / "features.npy"
    start = 0
    if side.is_file():
        old = json.loads(side.read_text("utf-8"))
        for key, what in (("checkpoint_sha256", "checkpoint"), ("store_sha256", "store"), ("split", "split"),
                          ("count", "image count"), ("dim", "feature size")):
            if old.get(key) != meta[key]:
                raise UserError(
                    f"{out} already holds features of another {what} ({old.get(key)!r:.40} vs {meta[key]!r:.40}); "
                    f"choose another --out or delete the folder"
                )
        start = rows_done(out) if feats_path.is_file() else 0
    if start == 0 or not feats_path.is_file():
        start = 0
        np.lib.format.open_memmap(feats_path, mode="w+", dtype=np.float32, shape=(n, dim)).flush()
        np.save(out / "index.npy", np.arange(n, dtype=np.int64))
        np.save(out / "labels.npy", part.labels[:n].astype(np.int64))
        paths = part.paths()[:n]
        (out / "paths.txt").write_text("".join(p + "\n" for p in paths), "utf-8")
        atomic_text(side, json.dumps({**meta, "complete": False}, indent=2))
        atomic_text(out / PROGRESS, json.dumps({"rows_done": 0, "count": n}))
    if start < n:
        feats = np.lib.format.open_memmap(feats_path, mode="r+")
        stop_at = n if max_rows is None else min(n, max_rows)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, initial=start, desc="features", unit="img", leave=False)
        row = start
        while row < stop_at:
            hi = min(row + batch_size, stop_at)
            feats[row:hi] = run.features(part.read(np.arange(row, hi)))
            feats.flush()  # rows reach the file before the progress file claims them
            atomic_text(out / PROGRESS, json.dumps({"rows_done": hi, "count": n}))
            if bar is not None:
                bar.update(hi - row)
            row = hi
        if bar is not None:
            bar.close()
        del feats
        if row >= n:
            atomic_text(side, json.dumps({**meta, "complete": True}, indent=2))
    return FeatureSet.open(out, allow_partial=True)


def pixel_vectors(split: Any, rows: np.ndarray, crop: int | None = None, batch: int = 4096) -> np.ndarray:
    """Raw pixels of the centre ``crop`` patch (default: whole image) as float32 (len(rows), crop*crop*3), 0-255.

    The baseline §6.1 contrasts: neighbours in pixel space, and auto-encoders on raw pixels.
    """
    rows = np.asarray(rows)
    out = None
    for lo in range(0, len(rows), batch):
        imgs = split.read(rows[lo:lo + batch])
        s = imgs.shape[1]
        c = s if crop is None else min(crop, s)
        o = (s - c) // 2
        flat = imgs[:, o:o + c, o:o + c].reshape(len(imgs), -1).astype(np.float32)
        if out is None:
            out = np.empty((len(rows), flat.shape[1]), np.float32)
        out[lo:lo + len(flat)] = flat
    return out if out is not None else np.empty((0, 0), np.float32)


def features_of(run: Any, split: Any, rows: np.ndarray, batch_size: int = 128,
                probabilities: bool = False) -> np.ndarray:
    """fc7 activity (or, with ``probabilities``, the softmax output) of the centre patch of ``rows``, in memory.

    ``run`` is a :class:`alexnet.inference.trained.TrainedRun`: inputs are normalised with its training mean.
    """
    out = []
    for lo in range(0, len(rows), batch_size):
        images = split.read(rows[lo:lo + batch_size])
        out.append(run.probabilities(images) if probabilities else run.features(images))
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)
