"""Sub-runs of the paper's network inside an experiment: trained (or resumed, or skipped) and evaluated."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from alexnet.experiments.common import Context

def train_sub_run(ctx: Context, sub: str, config: Any) -> dict[str, Any]:
    """Train (or resume, or skip) one run of the paper's network; returns its ``done.json``."""
    from alexnet.training.health import HealthError
    from alexnet.training.trainer import Trainer

    run_dir = ctx.run_dir(sub)
    done = run_dir / "done.json"
    earlier_seconds = 0.0  # training time of earlier segments when a budget is raised
    ctx.runs += 1
    if done.is_file():
        old = json.loads(done.read_text())
        old_max = old.get("config", {}).get("run", {}).get("max_steps", 0)
        new_max = config.run.max_steps
        extend = (old.get("status") == "finished" and old_max and (new_max == 0 or new_max > old_max)
                  and not old.get("schedule_done", False) and (run_dir / "checkpoints" / "last.pt").is_file())
        if not extend:
            ctx.log(f"[{ctx.name}] {sub}: finished earlier, skipped")
            return old
        ctx.log(f"[{ctx.name}] {sub}: budget raised from {old_max} to {new_max or 'the schedule'} steps; continuing")
        earlier_seconds = float(old.get("wall_seconds", 0.0))
        done.unlink()
        for stale in run_dir.glob("eval-*"):
            shutil.rmtree(stale)
    config.run.threads = config.run.threads or ctx.threads
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # interrupted before its first checkpoint: nothing to keep
    ctx.log(f"[{ctx.name}] {sub}: {'resuming' if resume else 'training'} "
            f"({config.run.max_steps or 'schedule'} steps, seed {config.run.seed})")
    t0 = time.perf_counter()
    status, reason = "finished", ""
    try:
        trainer = Trainer(config, run_dir, resume=resume, progress=ctx.progress)
        if not (config.run.max_steps and trainer.state.step >= config.run.max_steps) and not trainer.state.done:
            trainer.fit()
        state = trainer.state
        if not state.done:
            trainer.save_checkpoint()
        trainer.lock.release()
        step, epoch, schedule_done = state.step, state.epoch, state.done
    except HealthError as err:
        status, reason, step, epoch, schedule_done = "failed", str(err), -1, -1, False
    record = {"sub": sub, "status": status, "reason": reason, "steps": step, "epochs_completed": epoch,
              "schedule_done": schedule_done, "seed": config.run.seed, "wall_seconds": round(earlier_seconds + time.perf_counter() - t0, 1),
              "resumed": resume, "config": config.to_dict()}
    done.write_text(json.dumps(record, indent=2))
    return record


def best_or_last(run_dir: Path) -> str:
    """``best.pt`` where the run has best weights (the checkpoint, or, for a run restored from ``--keep``
    without weights, the cached test evaluation of them), else ``last.pt``."""
    if (run_dir / "checkpoints" / "best.pt").is_file() or (run_dir / "eval-val-best" / "eval.json").is_file():
        return "best.pt"
    return "last.pt"


def evaluate_sub_run(ctx: Context, sub: str, store: Path, split: str,
                     modes: tuple[str, ...] = ("centre",), checkpoint: str = "last.pt") -> dict[str, Any]:
    """Evaluate a sub-run's ``checkpoint`` (``last.pt``, or ``best.pt``: the best by the decision split)
    on ``split``; cached in ``runs/<sub>/eval-<split>/`` (``eval-<split>-best`` for best.pt), with the
    seconds the evaluation took (``seconds``), so that a rerun reading the cache still reports them."""
    from alexnet.inference.evaluate import evaluate_checkpoint

    run_dir = ctx.run_dir(sub)
    out = run_dir / (f"eval-{split}" if checkpoint == "last.pt" else f"eval-{split}-{Path(checkpoint).stem}")
    summary = out / "eval.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        if all(f"{m}_top1_error" in data for m in modes):
            return data
    source = run_dir / "checkpoints" / checkpoint
    t0 = time.perf_counter()
    evaluate_checkpoint(source, store, split=split, out=out, modes=modes, batch_size=128, device="cpu",
                        progress=ctx.progress)
    data = json.loads(summary.read_text())
    data["seconds"] = round(time.perf_counter() - t0, 1)
    summary.write_text(json.dumps(data, indent=2))
    return data


def seed_record(done: dict[str, Any], ev: dict[str, Any], errors: Sequence[str], images_key: str,
                **extra: Any) -> dict[str, Any]:
    """One seed's entry in a results JSON: its training summary (``done.json``) and the named errors
    (e.g. ``ten_top1_error``) and image count of its evaluation."""
    return {"seed": done["seed"], "steps": done["steps"], "epochs_completed": done["epochs_completed"],
            "status": done["status"], "train_wall_seconds": done["wall_seconds"],
            **{name: ev[name] for name in errors}, **extra, images_key: ev["images"]}


def history(run_dir: Path) -> list[dict[str, Any]]:
    from alexnet.training.metrics import read_history

    return read_history(run_dir)
