"""Experiment ``demo``: the demo's promise as a range -- its error and wall time over seeds and thread counts.

Each sub-run is what ``alexnet demo --seed S --threads T`` does in a fresh folder
(generate the shapes, prepare them with a holdout slice, train the ``demo`` preset,
evaluate the best checkpoint by the holdout on val), timed from start to end.  The
README states the range these sub-runs span; ``record.json`` (committed as
``docs/results/demo.json``) holds every value, and a test recomputes the README's
table from it.  Finished sub-runs (``done.json``) are skipped when the command is run
again; an interrupted one continues from its checkpoint (its time then is not a
user's time, and is marked ``resumed``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from alexnet.errors import UserError
from alexnet.experiments import common, record
from alexnet.runtime import atomic_text, load_average

DESCRIPTION = "the demo's top-1 error and wall time for several seeds at 1 and 2 threads (the README's range)"
SEEDS = {"quick": 1, "full": 3}
#: The demo's promise (issue "Training that learns"), not a paper number: error and time bounds.
PROMISE = {"centre_top1_error": 0.45, "wall_seconds": 60.0}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"threads": "1", "quick": True},
    "full": {"threads": "1,2", "quick": False},
}
METRICS = ("centre_top1_error", "centre_top5_error", "ten_top1_error", "ten_top5_error")


def thread_counts(text: str) -> list[int]:
    """``"1,2"`` -> [1, 2]; one clear error for anything but positive integers."""
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise UserError(f"threads: expected positive thread counts like 1,2, got {text!r}", key="param")
    return counts


def run(ctx: common.Context, params: dict[str, Any]) -> dict[str, Any]:
    seeds = ctx.seed_list(SEEDS)
    threads = thread_counts(params["threads"])
    common.start(ctx, seeds)
    arms: dict[str, dict[str, Any]] = {}
    for t in threads:
        arm = arms.setdefault(f"threads-{t}", {"label": f"{t} thread{'s' if t > 1 else ''}", "per_seed": {}})
        for seed in seeds:
            arm["per_seed"][str(seed)] = _sub_run(ctx, seed, t, params["quick"])
    values = [v for a in arms.values() for v in a["per_seed"].values()]
    worst = {m: max(v[m] for v in values) for m in ("centre_top1_error", "wall_seconds")}
    best = {m: min(v[m] for v in values) for m in ("centre_top1_error", "wall_seconds")}
    notes = [f"Budget `{ctx.budget}`: {params}; seeds {seeds}. Each value is one `alexnet demo --seed S --threads T` "
             "in a fresh folder, timed from start (generating the images) to end (evaluation).",
             f"Range over all {len(values)} runs: centre top-1 error {best['centre_top1_error']:.1%}–"
             f"{worst['centre_top1_error']:.1%} (promise ≤ {PROMISE['centre_top1_error']:.0%}; chance 90%), "
             f"wall {best['wall_seconds']:.0f}–{worst['wall_seconds']:.0f} s "
             f"(promise ≤ {PROMISE['wall_seconds']:.0f} s on 2 idle cores)."]
    doc = {
        "name": "demo",
        "question": "Does `alexnet demo` keep its promise (centre top-1 error ≤ 45%, ≤ 60 s on 2 idle cores) for "
                    "every seed and thread count?",
        **common.record_head(ctx, seeds, threads=0),
        "arms": arms,
        "promise": PROMISE,
        "table": {"columns": [
            {"metric": "centre_top1_error", "label": "top-1 error, centre", "format": "pct"},
            {"metric": "ten_top1_error", "label": "top-1 error, ten patches", "format": "pct"},
            {"metric": "wall_seconds", "label": "wall, s", "format": "int"}],
            "rows": list(arms)},
        "notes": notes,
    }
    record.write(doc, ctx.out / "record.json")
    table = record.render(doc)
    return common.finish(ctx, seeds=seeds, results={"arms": arms, "params": params}, table=table, plot=None,
                         paper={}, notes=notes)


def _sub_run(ctx: common.Context, seed: int, threads: int, quick: bool) -> dict[str, Any]:
    """One demo in its own folder (skipped when its ``done.json`` exists); its errors and wall seconds."""
    from alexnet.demo import run_demo

    folder = ctx.run_dir(f"threads{threads}-seed{seed}")
    done = folder / "done.json"
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    ctx.runs += 1
    resumed = (folder / f"run-seed{seed}" / "checkpoints" / "last.pt").is_file()
    load = load_average()  # when it started
    t0 = time.perf_counter()
    errors = run_demo(folder, quick=quick, seed=seed, threads=threads, progress=False)
    values: dict[str, Any] = {m: float(errors[m]) for m in METRICS}
    values.update(wall_seconds=round(time.perf_counter() - t0, 1), resumed=resumed, load_average_at_start=load)
    atomic_text(done, json.dumps(values, indent=2) + "\n")
    print(f"[demo] seed {seed}, {threads} thread(s): centre top-1 error {values['centre_top1_error']:.1%}, "
          f"{values['wall_seconds']:.0f} s", flush=True)
    return values
