"""conv1's kernels as an image grid (Figure 3) and how colour-specific each column is (§6.1).

"The kernels on GPU 1 are largely color-agnostic, while the kernels on GPU 2
are largely color-specific."  Kernel i of conv1 belongs to column
``i // (n / columns)`` (first half = column 1, the top 48 of Figure 3).

Each kernel is shown min-max normalised to [0, 1] on its own.  Two numbers per
kernel measure colour, averaged over each column:

* ``channel_spread``: the mean over pixels of (max - min over R, G, B) of the
  [0, 1]-normalised kernel; 0 for a grey kernel.
* ``colour_energy``: the fraction of the kernel's energy (after removing its
  mean) that lies off the grey axis, ``|w - mean_c w|^2 / |w - mean w|^2``;
  0 for a grey kernel, 2/3 on average for random colour noise.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


def normalise_kernels(weights: np.ndarray) -> np.ndarray:
    """(n, 3, h, w) weights -> (n, h, w, 3) tiles, each min-max scaled to [0, 1] on its own."""
    w = np.asarray(weights, np.float64).transpose(0, 2, 3, 1)
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    span = w.max(axis=(1, 2, 3), keepdims=True) - lo
    return np.where(span > 0, (w - lo) / np.where(span > 0, span, 1), 0.5)


def channel_spread(tiles: np.ndarray) -> np.ndarray:
    """Per kernel: mean over pixels of the spread of R, G, B of the normalised tile."""
    return (tiles.max(-1) - tiles.min(-1)).mean(axis=(1, 2))


def colour_energy(weights: np.ndarray) -> np.ndarray:
    """Per kernel: fraction of the zero-mean kernel's energy off the grey (R = G = B) axis."""
    w = np.asarray(weights, np.float64)
    w = w - w.mean(axis=(1, 2, 3), keepdims=True)
    colour = w - w.mean(axis=1, keepdims=True)
    total = (w ** 2).sum(axis=(1, 2, 3))
    return np.where(total > 0, (colour ** 2).sum(axis=(1, 2, 3)) / np.where(total > 0, total, 1), 0.0)


def column_split_null(values: np.ndarray, draws: int = 10000, seed: int = 0) -> dict[str, float]:
    """How far apart two columns' mean ``values`` would be by chance (§6.1's colour specialisation).

    The observed statistic is |mean of column 1 - mean of column 2| over the per-kernel ``values`` (kernels
    split as :func:`column_of`).  Its null is the same statistic over ``draws`` random equal splits of the
    same kernels (seeded, so repeatable): a net whose columns did not specialise looks like one of them.
    Returns the observed difference, the null's mean and ``p``, the share of random splits at least as far
    apart as the observed one.
    """
    v = np.asarray(values, np.float64)
    col = column_of(len(v), 2)
    observed = abs(v[col == 0].mean() - v[col == 1].mean())
    rng = np.random.default_rng(seed)
    # each row is a random permutation of the kernels; its first half plays column 1: (draws, n)
    perm = np.argsort(rng.random((draws, len(v))), axis=1)
    half = len(v) // 2
    diffs = np.abs(v[perm[:, :half]].mean(axis=1) - v[perm[:, half:]].mean(axis=1))
    # a tolerance so that a split equal to the observed one counts as "at least as far apart"
    return {"observed": float(observed), "null_mean": float(diffs.mean()),
            "p": float((diffs >= observed - 1e-12).mean())}


@dataclass
class ColumnColour:
    column: int  # 1-based, as the paper's GPU 1 / GPU 2
    kernels: tuple[int, int]  # first, last+1 kernel index
    channel_spread: float
    colour_energy: float


def column_of(n_kernels: int, columns: int) -> np.ndarray:
    """0-based column of each kernel: first n/columns kernels are column 0, and so on."""
    if columns < 1 or n_kernels % columns:
        raise ValueError(f"{n_kernels} kernels do not split into {columns} columns")
    return np.arange(n_kernels) // (n_kernels // columns)


def colour_by_column(weights: np.ndarray, columns: int) -> list[ColumnColour]:
    tiles = normalise_kernels(weights)
    spread, energy = channel_spread(tiles), colour_energy(weights)
    col = column_of(len(tiles), columns)
    per = len(tiles) // columns
    return [ColumnColour(c + 1, (c * per, (c + 1) * per), float(spread[col == c].mean()),
                         float(energy[col == c].mean())) for c in range(columns)]


def colour_summary(weights: np.ndarray, columns: int) -> dict[str, Any]:
    """JSON-ready: per-column means, per-kernel values and which column is the more colour-specific."""
    cols = colour_by_column(weights, columns)
    tiles = normalise_kernels(weights)
    energy = colour_energy(weights)  # (n,)
    out: dict[str, Any] = {
        "kernels": int(len(tiles)), "columns": columns, "kernel_size": list(np.shape(weights)[2:]),
        "per_column": [asdict(c) for c in cols],
        "per_kernel": {"channel_spread": channel_spread(tiles).round(5).tolist(),
                       "colour_energy": energy.round(5).tolist()},
    }
    if columns == 2:
        a, b = cols
        out["more_colour_specific_column"] = 1 if a.colour_energy > b.colour_energy else 2
        lo, hi = sorted((a.colour_energy, b.colour_energy))
        out["colour_energy_ratio"] = hi / lo if lo > 0 else math.inf
        null = column_split_null(energy)
        out["colour_energy_split_null"], out["colour_energy_split_p"] = null["null_mean"], null["p"]
    return out


@dataclass(frozen=True)
class GridLayout:
    """Where each kernel's tile sits: ``positions[i] = (row pixel, column pixel)`` of its top-left corner."""

    positions: tuple[tuple[int, int], ...]
    height: int
    width: int
    tile: tuple[int, int]


def grid_layout(n_kernels: int, tile: tuple[int, int], columns: int, per_row: int | None = None,
                pad: int = 1, block_gap: int = 4) -> GridLayout:
    """One block per column, stacked top to bottom (Figure 3: column 1 on top); kernels in order, row-major."""
    per_col = n_kernels // columns
    column_of(n_kernels, columns)
    per_row = per_row or min(16, per_col)
    rows = math.ceil(per_col / per_row)
    th, tw = tile
    block_h = rows * (th + pad) + pad
    width = per_row * (tw + pad) + pad
    positions = []
    for i in range(n_kernels):
        c, j = divmod(i, per_col)
        r, q = divmod(j, per_row)
        positions.append((c * (block_h + block_gap) + pad + r * (th + pad), pad + q * (tw + pad)))
    height = columns * block_h + (columns - 1) * block_gap
    return GridLayout(tuple(positions), height, width, tile)


def kernel_grid(weights: np.ndarray, columns: int, per_row: int | None = None, pad: int = 1,
                background: float = 1.0) -> tuple[np.ndarray, GridLayout]:
    """(H, W, 3) float image in [0, 1] with every normalised kernel at its layout position."""
    tiles = normalise_kernels(weights)
    layout = grid_layout(len(tiles), tiles.shape[1:3], columns, per_row, pad)
    image = np.full((layout.height, layout.width, 3), background)
    th, tw = layout.tile
    for t, (y, x) in zip(tiles, layout.positions):
        image[y:y + th, x:x + tw] = t
    return image, layout


def analyse_checkpoint(source: str | Path, out: str | Path | None = None, *, scale: int = 4,
                       per_row: int | None = None) -> dict[str, Any]:
    """Kernel grid PNG (``out``) and colour JSON (``out`` with .json) of a run or checkpoint's conv1."""
    from alexnet.inference.trained import TrainedRun
    from alexnet.probes.plots import save_image

    run = TrainedRun.open(source, device="cpu")
    model = run.model
    weights = model.conv1_kernels().cpu().numpy()
    summary = {"checkpoint": str(run.path), **colour_summary(weights, model.columns)}
    if out is not None:
        out = Path(out)
        image, _ = kernel_grid(weights, model.columns, per_row)
        save_image(image, out, scale=scale)
        summary["image"] = str(out)
        out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    return summary
