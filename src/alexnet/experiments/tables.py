"""Numbers and tables of the experiments' results: mean ± std, percentages, Markdown tables."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

def mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return float("nan"), float("nan")
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def pct(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{100 * x:.{digits}f}%"


def pct_pm(values: Sequence[float], digits: int = 2) -> str:
    m, s = mean_std(values)
    if math.isnan(m):
        return "—"
    n = len([x for x in values if x is not None])
    return f"{100 * m:.{digits}f}%" + (f" ± {100 * s:.{digits}f}" if n > 1 else "")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)
