"""A learning-rate sweep that brackets its best rate: it extends itself while the best is at an edge.

``bracketing_sweep(rates, score, factor=3, max_extensions=4)`` evaluates ``score(lr)``
(lower is better; any comparable value, e.g. a tuple) at every starting rate.  While
the best rate is the lowest (or the highest) of those evaluated, one more rate is
tried beyond it, ``factor`` times lower (or higher), until the best is interior -- a
worse rate on each side of it -- or ``max_extensions`` rates were added; the
answer says which.  Ties go to the lower rate.  Each ``score`` call is one sub-run
(resumable on its own), so a rerun re-evaluates nothing that finished.
"""

from __future__ import annotations

from typing import Any, Callable

INTERIOR = "interior"


def next_rate(lr: float, factor: float, up: bool) -> float:
    """``lr`` times (or divided by) ``factor``, rounded to 3 significant figures (stable sub-run names)."""
    return float(f"{(lr * factor if up else lr / factor):.3g}")


def bracketing_sweep(rates: list[float], score: Callable[[float], Any], *, factor: float = 3.0,
                     max_extensions: int = 4) -> dict[str, Any]:
    """{"scores": {lr: score}, "best": lr, "status": "interior" or why not, "extensions": n,
    "range": [lowest, highest]}.  A best rate is interior when a lower and a higher rate were both
    tried and both scored worse; a single starting rate is extended downwards first."""
    if not rates:
        raise ValueError("a sweep needs at least one rate")
    if factor <= 1:
        raise ValueError(f"factor must be above 1, got {factor}")
    scores: dict[float, Any] = {}
    for lr in sorted({float(r) for r in rates}):
        scores[lr] = score(lr)
    extensions = 0
    while True:
        ordered = sorted(scores)
        best = min(ordered, key=lambda r: (scores[r], r))
        if ordered[0] < best < ordered[-1]:
            status = INTERIOR
            break
        if extensions >= max_extensions:
            status = (f"not bracketed: the best rate {best:g} is the {'lowest' if best == ordered[0] else 'highest'} "
                      f"tried after {extensions} extension(s) (the limit)")
            break
        up = best == ordered[-1] and len(ordered) > 1
        lr = next_rate(ordered[-1] if up else ordered[0], factor, up)
        scores[lr] = score(lr)
        extensions += 1
    ordered = sorted(scores)
    return {"scores": {lr: scores[lr] for lr in ordered}, "best": best, "status": status,
            "extensions": extensions, "range": [ordered[0], ordered[-1]]}
