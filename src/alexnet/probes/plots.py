"""Plotting: turns arrays that other modules computed into PNG bytes or files (matplotlib, Agg).

Nothing here computes a result; every function takes the numbers or images to
draw and returns PNG bytes (``to=None``) or writes them to a file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _finish(fig: Any, to: str | Path | None, dpi: int = 100) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    if to is not None:
        Path(to).parent.mkdir(parents=True, exist_ok=True)
        Path(to).write_bytes(data)
    return data


def image_png(image: np.ndarray, scale: int = 1) -> bytes:
    """(H, W, 3) float in [0, 1] or uint8 -> PNG bytes, enlarged ``scale`` times by pixel repetition."""
    from PIL import Image

    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a * 255), 0, 255).astype(np.uint8)
    if scale > 1:
        a = a.repeat(scale, 0).repeat(scale, 1)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def save_image(image: np.ndarray, path: str | Path, scale: int = 1) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_png(image, scale))


def neighbour_grid(
    queries: np.ndarray,
    neighbours: np.ndarray,
    *,
    query_titles: Sequence[str] = (),
    neighbour_titles: Sequence[Sequence[str]] = (),
    to: str | Path | None = None,
    cell: float = 1.3,
) -> bytes:
    """Figure 4 (right): query images (Q, H, W, 3) in the first column, their neighbours (Q, K, H, W, 3) beside."""
    plt = _pyplot()
    q, k = neighbours.shape[:2]
    fig, axes = plt.subplots(q, k + 1, figsize=(cell * (k + 1), cell * q * 1.15), squeeze=False)
    for r in range(q):
        for c in range(k + 1):
            ax = axes[r, c]
            ax.imshow(queries[r] if c == 0 else neighbours[r, c - 1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            title = (query_titles[r] if r < len(query_titles) else "") if c == 0 else \
                (neighbour_titles[r][c - 1] if r < len(neighbour_titles) else "")
            if title:
                ax.set_title(title, fontsize=7)
            if c == 0:
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:red")
                    spine.set_linewidth(2)
    return _finish(fig, to)


def curves(
    epochs: np.ndarray,
    series: dict[str, np.ndarray],
    *,
    ylabel: str,
    log: bool = False,
    to: str | Path | None = None,
) -> bytes:
    """One line per named series over epochs (error curves, learning rate)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, values in series.items():
        ax.plot(epochs, values, marker="o", markersize=3, label=name)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _finish(fig, to)


def top5_panel(
    images: np.ndarray,
    top_names: Sequence[Sequence[str]],
    top_probs: np.ndarray,
    true_names: Sequence[str],
    true_in_top: Sequence[int],
    *,
    to: str | Path | None = None,
) -> bytes:
    """Figure 4 (left): each image with its top-5 labels as bars; the correct label's bar red (-1: not in top 5)."""
    plt = _pyplot()
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 3.6), squeeze=False,
                             gridspec_kw={"height_ratios": [1.1, 1]})
    for i in range(n):
        ax = axes[0, i]
        ax.imshow(images[i], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(true_names[i], fontsize=7)
        bx = axes[1, i]
        k = len(top_names[i])
        colours = ["tab:red" if j == true_in_top[i] else "tab:blue" for j in range(k)]
        bx.barh(np.arange(k), top_probs[i][:k], color=colours)
        bx.set_yticks(np.arange(k))
        bx.set_yticklabels([s[:14] for s in top_names[i]], fontsize=6)
        bx.invert_yaxis()
        bx.set_xlim(0, 1)
        bx.tick_params(axis="x", labelsize=6)
    fig.tight_layout()
    return _finish(fig, to)
