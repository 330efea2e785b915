"""Training-set statistics of a store (§2 mean subtraction, §4.1 PCA lighting), exact and order-free.

The mean image and channel sums are integer sums kept in float64 (exact below
2**53); the RGB second moments are integer sums computed in float64 chunks small
enough to be exact and accumulated as Python integers, so the result does not
depend on the order in which shards are visited (prepare computes them in parallel).
All values are in 0-255 pixel units.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from alexnet.errors import UserError
from alexnet.runtime import atomic_write

STATS_UNITS = "RGB pixel values in 0..255 units (uint8 scale); covariance over all pixels of the split"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed so that stats.npz is byte-reproducible
_COV_CHUNK_PIXELS = 1 << 20  # float64 sums of 2**20 products <= 255**2 are exact

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


def write_stats(path: Path, stats: Stats, split: str) -> str:
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
