"""The experiments' plots: error against epochs, in one style."""

from __future__ import annotations

from pathlib import Path
from typing import Any

def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 90) -> Path:
    plt = pyplot()
    fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_history(ax: Any, hist: list[dict[str, Any]], label: str, colour: str | None = None,
                 style: str = "-") -> None:
    """Training error (step records, smoothed by the log window) and the decision split's error (epoch ends, named
    by the records' ``val_split``: ``holdout`` where the run decided on a holdout slice) over epochs."""
    steps = [h for h in hist if h.get("kind") == "step"]
    epochs = [h for h in hist if h.get("kind") == "epoch"]
    if steps:
        per_epoch = _steps_per_epoch(hist)
        x = [h["step"] / per_epoch if per_epoch else h["step"] for h in steps]
        line, = ax.plot(x, [h["train_top1_error"] for h in steps], style, color=colour, alpha=0.6, linewidth=1,
                        label=f"{label} train")
        colour = line.get_color()
    val = [h for h in epochs if "val_top1_error" in h]
    if val:
        ax.plot([h["epoch"] for h in val], [h["val_top1_error"] for h in val], style, color=colour, marker="o",
                markersize=3, linewidth=1.8, label=f"{label} {val[-1].get('val_split', 'val')} (centre)")


def style_error_axes(ax: Any, title: str, ylabel: str = "top-1 error") -> None:
    """The look every error-against-epochs plot shares: error from 0 to 1, a light grid, a small legend."""
    ax.set_xlabel("epochs")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # an arm run alone draws no workhorse curve: no empty legend (a warning)
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)


def _steps_per_epoch(hist: list[dict[str, Any]]) -> float:
    ends = [h for h in hist if h.get("kind") == "epoch"]
    if ends:
        return ends[0]["step"] / ends[0]["epoch"]
    steps = [h for h in hist if h.get("kind") == "step"]
    by_epoch: dict[int, int] = {}
    for h in steps:
        by_epoch[h["epoch"]] = max(by_epoch.get(h["epoch"], 0), h["step"])
    if len(by_epoch) > 1:
        first = min(by_epoch)
        return float(by_epoch[first])
    return 0.0
