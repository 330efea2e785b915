"""The demo pipeline (prepare -> train -> eval) on the built-in generated shapes (:mod:`alexnet.data.sources.shapes`).

The store sets aside a holdout slice of the training images (``prepare --holdout``):
training decides its learning-rate drops and its best checkpoint on it, and the demo
evaluates that best checkpoint on the validation images, which no decision saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from alexnet.data.sources.shapes import SHAPES, write_demo_tree


@dataclass(frozen=True)
class DemoData:
    """How much generated data the demo makes (images per class) and at what size it stores it."""

    train: int = 300
    val: int = 60
    holdout: int = 30  # of the training images, for decisions
    image_size: int = 32  # the demo preset takes 28x28 patches of these (the paper's 224/256 ratio)


FULL = DemoData()
QUICK = DemoData(train=100, val=20, holdout=10)
#: The quick demo's recipe changes (tests): fewer epochs, the warm-up shortened to one of its epochs.
QUICK_OVERRIDES = ["schedule.max_epochs=5", "schedule.warmup_steps=14"]


def run_demo(workdir: Path, *, quick: bool = False, seed: int = 0, threads: int = 0,
             progress: bool = True) -> dict[str, float]:
    """prepare -> train -> eval on the generated data; returns the best checkpoint's errors on val."""
    from alexnet.config import load_config
    from alexnet.data.prepare import prepare
    from alexnet.inference.evaluate import evaluate_checkpoint
    from alexnet.training.trainer import train

    t0 = time.perf_counter()
    data = QUICK if quick else FULL
    src = write_demo_tree(workdir / "images", train_per_class=data.train, val_per_class=data.val)
    print(f"[1/3] generated {len(SHAPES)} classes of shapes in {src} ({time.perf_counter() - t0:.0f}s)")
    store = workdir / "store"
    report = prepare(src, store, size=data.image_size, holdout=data.holdout, progress=progress)
    print(f"[2/3] prepared {store}: {report.summary().splitlines()[0]}")
    run_dir = workdir / f"run-seed{seed}"
    overrides = [f'data.store="{store}"', f"run.seed={seed}", f"run.threads={threads}"]
    if quick:
        overrides += QUICK_OVERRIDES
    if (run_dir / "checkpoints" / "last.pt").is_file():
        from alexnet.training.rundir import load_run_config

        state = train(load_run_config(run_dir), run_dir, resume=True, progress=progress)
    else:
        state = train(load_config("demo", overrides), run_dir, progress=progress)
    best = run_dir / "checkpoints" / "best.pt"
    print(f"[3/3] trained {state.epoch} epochs in {run_dir}; evaluating the best checkpoint by the holdout "
          f"(top-1 {state.best_top1:.3f}) on val, with the centre patch and ten patches")
    result = evaluate_checkpoint(best, store, split="val", out=run_dir / "eval", progress=progress)
    print(result.table())
    chance = 1 - 1 / len(SHAPES)
    print(f"chance top-1 error is {chance:.2f}; total time {time.perf_counter() - t0:.0f}s")
    return result.errors()
