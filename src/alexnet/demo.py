"""The demo pipeline (prepare -> train -> eval) on the built-in generated shapes (:mod:`alexnet.data.sources.shapes`)."""

from __future__ import annotations

import time
from pathlib import Path

from alexnet.data.sources.shapes import SHAPES, write_demo_tree


def run_demo(workdir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, float]:
    """prepare -> train -> eval on the generated data; returns the final errors."""
    from alexnet.config import load_config
    from alexnet.inference.evaluate import evaluate_checkpoint
    from alexnet.data.prepare import prepare
    from alexnet.training.trainer import train

    t0 = time.perf_counter()
    per_class = (60, 20) if quick else (300, 60)
    src = write_demo_tree(workdir / "images", train_per_class=per_class[0], val_per_class=per_class[1])
    print(f"[1/3] generated {len(SHAPES)} classes of shapes in {src} ({time.perf_counter() - t0:.0f}s)")
    store = workdir / "store"
    report = prepare(src, store, size=32, progress=progress)
    print(f"[2/3] prepared {store}: {report.summary().splitlines()[0]}")
    run_dir = workdir / "run"
    overrides = [f'data.store="{store}"']
    if quick:
        overrides += ["schedule.max_epochs=2"]
    if (run_dir / "checkpoints" / "last.pt").is_file():
        from alexnet.training.rundir import load_run_config

        state = train(load_run_config(run_dir), run_dir, resume=True, progress=progress)
    else:
        state = train(load_config("demo", overrides), run_dir, progress=progress)
    print(f"[3/3] trained {state.epoch} epochs in {run_dir}; evaluating with centre and ten patches")
    result = evaluate_checkpoint(run_dir, store, split="val", out=run_dir / "eval", progress=progress)
    print(result.table())
    chance = 1 - 1 / len(SHAPES)
    print(f"chance top-1 error is {chance:.2f}; total time {time.perf_counter() - t0:.0f}s")
    return result.errors()
