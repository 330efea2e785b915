"""Fashion-MNIST from its IDX files (Debian's ``dataset-fashion-mnist``) into a store.

``apt-get install dataset-fashion-mnist`` puts the four files under
``/usr/share/datasets/fashion-mnist/``.  Images are 28x28 greyscale; the store
holds them replicated to RGB (the network's three input channels), so the
paper's pipeline runs unchanged (PCA colour noise is off in the preset: the
three channels are equal).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from alexnet.errors import UserError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES: list[tuple[str, str]] = [(f"fmnist{i}", name) for i, name in enumerate(
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"])]
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
IMAGE_SIDE = 28  # every Fashion-MNIST image is 28x28
PRESET_PAD = 2  # the fashion-mnist preset's border: 32x32 stored, 28x28 patches (docs/fidelity.md)


def _open(path: Path) -> bytes:
    if not path.is_file():
        plain = path.with_suffix("") if path.suffix == ".gz" else path
        if plain.is_file():
            return plain.read_bytes()
        raise UserError(f"{path} does not exist: install Fashion-MNIST with "
                        "`apt-get install dataset-fashion-mnist` or pass the folder holding the IDX files")
    with gzip.open(path, "rb") as f:
        return f.read()


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a uint8 array: (N, H, W) images or (N,) labels."""
    data = _open(Path(path))
    if len(data) < 8:
        raise UserError(f"{path}: too short to be an IDX file")
    magic, n = struct.unpack(">II", data[:8])
    if magic == IMAGE_MAGIC:
        rows, cols = struct.unpack(">II", data[8:16])
        arr = np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows, cols)
    elif magic == LABEL_MAGIC:
        arr = np.frombuffer(data, np.uint8, n, 8)
    else:
        raise UserError(f"{path}: not an IDX image or label file (magic {magic})")
    return arr.copy()


def load(folder: Path = DEFAULT_DIR, pad: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images (N, 28+2·pad, 28+2·pad, 3) uint8, labels), "test": ...}; greyscale replicated to RGB.

    ``pad`` adds a border of zeros (Fashion-MNIST's own background), so that random crops of the
    original size move the garment instead of cutting it (docs/fidelity.md, small-input crops).
    """
    if pad < 0:
        raise UserError(f"pad: must be >= 0, got {pad}")
    out = {}
    for split, (images, labels) in FILES.items():
        x = read_idx(Path(folder) / images)
        y = read_idx(Path(folder) / labels).astype(np.int64)
        if x.ndim != 3 or len(x) != len(y):
            raise UserError(f"{folder}: {split} images {x.shape} do not match labels {y.shape}")
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))  # (N, 28+2·pad, 28+2·pad), zeros around
        out[split] = (np.repeat(x[..., None], 3, axis=3), y)
    return out


def pad_for_side(side: int) -> int:
    """The border that stores the 28x28 images at ``side`` x ``side`` (a user error if none does)."""
    if side < IMAGE_SIDE or (side - IMAGE_SIDE) % 2:
        raise UserError(f"{side}: Fashion-MNIST is stored as its {IMAGE_SIDE}x{IMAGE_SIDE} images with an "
                        f"equal border, so the size must be {IMAGE_SIDE} plus an even number", key="size")
    return (side - IMAGE_SIDE) // 2


def write_fashion_store(out: Path, folder: Path = DEFAULT_DIR, pad: int = 0, holdout: int = 0, seed: int = 0):
    """Write Fashion-MNIST (train 60,000 / test 10,000) as a store in ``out``, ``pad`` zeros around;
    ``holdout`` images of every class (drawn with ``seed``) move from train to a ``holdout`` split, the
    slice that rate drops, stopping and the best checkpoint are decided on."""
    from alexnet.data.discover import holdout_indices
    from alexnet.data.shards import write_store
    from alexnet.data.store import HOLDOUT_SPLIT

    splits = load(folder, pad)
    if holdout:
        x, y = splits["train"]
        keep, held = holdout_indices(y, holdout, seed, [name for _, name in CLASSES])
        splits["train"], splits[HOLDOUT_SPLIT] = (x[keep], y[keep]), (x[held], y[held])
    source = f"{folder}" + (f" (holdout {holdout} per class, seed {seed})" if holdout else "")
    return write_store(Path(out), splits, CLASSES, source=source)


def prepare_fashion_mnist(folder: Path, out: Path, size: int | None = None, holdout: int = 0, seed: int = 0):
    """The fashion-mnist preset's store: the 28x28 images on a border of zeros, ``size`` x ``size``
    (default 28 + 2 * PRESET_PAD), ``holdout`` training images per class set aside; ``out`` must not exist
    or be empty (this writer cannot resume)."""
    size = IMAGE_SIDE + 2 * PRESET_PAD if size is None else size
    pad = pad_for_side(size)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; choose another", key="out")
    return write_fashion_store(out, folder, pad, holdout, seed)
