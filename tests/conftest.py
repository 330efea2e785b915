"""Shared fixtures: small generated stores, so that tests need no downloaded data."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _same_global_rng_state_for_every_test():
    """Tests that draw from the global generators see the same numbers whatever ran before them."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def quadrant_images(n: int, size: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise images whose class is the bright quadrant (learnable in a few steps)."""
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    half = size // 2
    for i, c in enumerate(labels):
        r, q = divmod(int(c) % 4, 2)
        images[i, r * half:(r + 1) * half, q * half:(q + 1) * half] += np.uint8(120 + 30 * (c // 4))
    return images, labels


def make_store(path: Path, *, train: int = 96, val: int = 40, size: int = 20, classes: int = 4, seed: int = 0):
    from alexnet.data.shards import write_store

    rng = np.random.default_rng(seed)
    return write_store(
        path,
        {"train": quadrant_images(train, size, classes, rng), "val": quadrant_images(val, size, classes, rng)},
        [(f"n{i:08d}", f"class {i}") for i in range(classes)],
    )


@pytest.fixture
def tiny_store(tmp_path: Path):
    return make_store(tmp_path / "store")
