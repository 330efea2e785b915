"""What every experiment shares: budgets, seeds, data, resumable sub-runs, outputs.

An experiment writes into its run directory ``OUT``::

    OUT/experiment.json   name, budget, seeds, command, environment (first start)
    OUT/runs/<sub>/       one sub-run each (a train run directory, or a small-network run)
    OUT/results.json      every number, with hardware, versions, seeds and number of runs
    OUT/results.md        the Markdown table (also printed)
    OUT/<name>.png        the plot

A sub-run that finished (``done.json`` / ``result.json`` present) is skipped when
the experiment is run again; an interrupted one continues from its last
checkpoint (``alexnet train --resume`` machinery for the paper's network).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from alexnet.errors import UserError
from alexnet.experiments import BUDGETS


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_data_root() -> Path:
    """``$ALEXNET_DATA``, else ``../shared/data`` beside the project, else ``./shared/data``."""
    env = os.environ.get("ALEXNET_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data"
        if (parent / "pyproject.toml").is_file() and candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


def default_cache() -> Path:
    """Where prepared stores are kept between experiments: ``$ALEXNET_CACHE`` or ``~/.cache/alexnet/stores``."""
    env = os.environ.get("ALEXNET_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "alexnet" / "stores"


@dataclass
class Context:
    """One experiment invocation."""

    name: str
    out: Path
    budget: str = "quick"
    seeds: int | None = None  # None: the experiment's default for the budget
    data_root: Path = field(default_factory=default_data_root)
    cache: Path = field(default_factory=default_cache)
    stores: dict[str, Path] = field(default_factory=dict)  # dataset name -> an existing store (tests, own data)
    progress: bool = False
    threads: int = 0
    workers: int = 0
    log: Callable[[str], None] = _log
    started: float = field(default_factory=time.perf_counter)
    runs: int = 0  # sub-runs trained or reused

    def __post_init__(self) -> None:
        if self.budget not in BUDGETS:
            raise UserError(f"unknown value {self.budget!r}; allowed: {', '.join(BUDGETS)}", key="budget")
        if self.seeds is not None and self.seeds < 1:
            raise UserError(f"must be at least 1, got {self.seeds}", key="seeds")
        self.out = Path(self.out)
        self.data_root = Path(self.data_root)
        self.cache = Path(self.cache)

    @property
    def quick(self) -> bool:
        return self.budget == "quick"

    def seed_list(self, default: dict[str, int]) -> list[int]:
        n = self.seeds if self.seeds is not None else default[self.budget]
        return list(range(n))

    def run_dir(self, sub: str) -> Path:
        return self.out / "runs" / sub


# --------------------------------------------------------------------------- environment


# --------------------------------------------------------------------------- stores


def store_for(ctx: Context, dataset: str, make: Callable[[Path], Any]) -> Path:
    """The base store of ``dataset``: ``ctx.stores[dataset]`` if given, else made once in the cache."""
    from alexnet.data.store import Store

    if dataset in ctx.stores:
        return Path(ctx.stores[dataset])
    path = ctx.cache / dataset
    try:
        Store(path)
        return path
    except (UserError, OSError, ValueError, KeyError):
        pass
    ctx.log(f"[{ctx.name}] preparing {dataset} store in {path} (once; cached for later experiments)")
    make(path)
    Store(path)
    return path


def prepared_from_tree(ctx: Context, dataset: str, folder: str, size: int) -> Path:
    """A store prepared with :func:`alexnet.data.prepare.prepare` from ``data_root/folder`` at ``size``."""
    from alexnet.data.prepare import prepare

    src = ctx.data_root / folder
    if dataset not in ctx.stores and not src.is_dir():
        raise UserError(f"{src} does not exist: name the folder holding {folder}/ or set ALEXNET_DATA", key="data_root")
    workers = max(1, min(2, os.cpu_count() or 1))
    return store_for(ctx, dataset, lambda out: prepare(src, out, size=size, workers=workers, progress=ctx.progress))


def _held_out_name(store: Any) -> str:
    for name in ("val", "test"):
        if name in store.splits():
            return name
    raise UserError(f"store {store.path} has neither a val nor a test split")


def derived_store(ctx: Context, base: Path, *, train: int, val: int, train_eval: int, seed: int = 0) -> Path:
    """A store with ``train`` (subset of the base's train), ``val`` (subset of its val/test) and
    ``train_eval`` (a subset of the new train split, to measure training error in eval mode).

    0 means "all".  Subsets are seeded random draws; the store is cached by its counts.
    """
    from alexnet.data.shards import write_store
    from alexnet.data.store import Store

    src = Store(base)
    held = _held_out_name(src)
    n_train, n_val = len(src.split("train")), len(src.split(held))
    train = n_train if train <= 0 else min(train, n_train)
    val = n_val if val <= 0 else min(val, n_val)
    train_eval = min(train_eval if train_eval > 0 else train, train)
    key = f"{base.name}-{train}-{val}-{train_eval}-s{seed}"
    out = (ctx.cache / "derived" / key) if str(base).startswith(str(ctx.cache)) else base.parent / f".derived-{key}"
    if (out / "derived.json").is_file():
        return out
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.permutation(n_train)[:train])
    va = np.sort(rng.permutation(n_val)[:val])
    te = tr[np.sort(rng.permutation(train)[:train_eval])]
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    s_train, s_val = src.split("train"), src.split(held)
    write_store(tmp, {
        "train": (s_train.read(tr), s_train.labels[tr]),
        "val": (s_val.read(va), s_val.labels[va]),
        "train_eval": (s_train.read(te), s_train.labels[te]),
    }, list(src.classes), source=f"{base} (train {train}, {held} {val}, train_eval {train_eval}, seed {seed})")
    (tmp / "derived.json").write_text(json.dumps({"base": str(base), "train": train, "val": val,
                                                  "val_from": held, "train_eval": train_eval, "seed": seed}))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    Store(out)
    return out


def load_arrays(store_path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from alexnet.data.store import Store

    s = Store(store_path).split(split)
    return s.read(np.arange(len(s))), s.labels.astype(np.int64)


# --------------------------------------------------------------------------- sub-runs of the paper's network


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
        step, epoch, schedule_done = state.step, state.epoch, state.done
    except HealthError as err:
        status, reason, step, epoch, schedule_done = "failed", str(err), -1, -1, False
    record = {"sub": sub, "status": status, "reason": reason, "steps": step, "epochs_completed": epoch,
              "schedule_done": schedule_done, "seed": config.run.seed, "wall_seconds": round(earlier_seconds + time.perf_counter() - t0, 1),
              "resumed": resume, "config": config.to_dict()}
    done.write_text(json.dumps(record, indent=2))
    return record


def evaluate_sub_run(ctx: Context, sub: str, store: Path, split: str,
                     modes: tuple[str, ...] = ("centre",)) -> dict[str, Any]:
    """Evaluate a sub-run's last weights on ``split``; cached in ``runs/<sub>/eval-<split>/``."""
    from alexnet.inference.evaluate import evaluate_checkpoint

    run_dir = ctx.run_dir(sub)
    out = run_dir / f"eval-{split}"
    summary = out / "eval.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        if all(f"{m}_top1_error" in data for m in modes):
            return data
    source = run_dir / "checkpoints" / "last.pt"
    evaluate_checkpoint(source, store, split=split, out=out, modes=modes, batch_size=128, device="cpu",
                        progress=ctx.progress)
    return json.loads(summary.read_text())


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


# --------------------------------------------------------------------------- numbers and tables


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


# --------------------------------------------------------------------------- outputs


def start(ctx: Context, seeds: list[int]) -> dict[str, Any]:
    """Write ``OUT/experiment.json`` (kept from the first start) and return it."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    path = ctx.out / "experiment.json"
    info = {"experiment": ctx.name, "budget": ctx.budget, "seeds": seeds, "command": sys.argv,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("budget") != ctx.budget:
            raise UserError(f"{ctx.out} holds a {old.get('budget')} run of {old.get('experiment')}; "
                            f"use another --out for --budget {ctx.budget}")
        info["first_started"] = old.get("first_started", old.get("started"))
    path.write_text(json.dumps(info, indent=2))
    return info


def finish(ctx: Context, *, seeds: list[int], results: dict[str, Any], table: str, plot: Path | None,
           paper: dict[str, Any], notes: Sequence[str] = ()) -> dict[str, Any]:
    """Write results.json and results.md, print the table; returns the results document."""
    wall = time.perf_counter() - ctx.started
    from alexnet.runtime import environment

    env = environment(ctx.threads)
    doc = {
        "experiment": ctx.name,
        "budget": ctx.budget,
        "out": str(ctx.out),
        "seeds": seeds,
        "runs": ctx.runs,
        "wall_seconds": round(wall, 1),
        "command": sys.argv,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "environment": env,
        "paper": paper,
        "results": results,
        "table": table,
        "plot": plot.name if plot else None,
        "notes": list(notes),
    }
    (ctx.out / "results.json").write_text(json.dumps(doc, indent=2, default=_jsonable))
    footer = (f"\n\nBudget `{ctx.budget}`, seeds {seeds}, {ctx.runs} sub-run(s), "
              f"{wall:.0f} s wall this invocation; {env['cpu_model']} ({env['cpu_count']} cores, "
              f"{env['torch_threads']} torch threads, load average {env['load_average']}), GPU {env['gpu']}; "
              f"torch {env['torch']}, alexnet {env['alexnet']}, Python {env['python']}.")
    md = f"# {ctx.name}\n\n{table}{footer}\n"
    if notes:
        md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if plot:
        md += f"\n![{ctx.name}]({plot.name})\n"
    (ctx.out / "results.md").write_text(md)
    print(table)
    print(footer.strip())
    for n in notes:
        print(f"- {n}")
    return doc


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return str(x)


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


def paper_config(ctx: Context, preset: str, store: Path, seed: int, overrides: list[str] | None = None,
                 max_steps: int = 0) -> Any:
    """A train config for one sub-run: the preset, this store, the seed, budget and resumability settings."""
    from alexnet.config import load_config

    config = load_config(preset, list(overrides or []))
    config.data.store = str(store)
    config.data.workers = ctx.workers
    config.run.seed = seed
    config.run.threads = ctx.threads
    if max_steps:
        config.run.max_steps = max_steps
        config.run.checkpoint_every = max(10, min(200, max_steps // 4))
        config.run.log_every = max(1, min(config.run.log_every, max_steps // 20))
    else:
        config.run.checkpoint_every = 200
    return config


def plot_history(ax: Any, hist: list[dict[str, Any]], label: str, colour: str | None = None,
                 style: str = "-") -> None:
    """Training error (step records, smoothed by the log window) and validation error (epoch ends) over epochs."""
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
                markersize=3, linewidth=1.8, label=f"{label} val (centre)")


def style_error_axes(ax: Any, title: str, ylabel: str = "top-1 error") -> None:
    """The look every error-against-epochs plot shares: error from 0 to 1, a light grid, a small legend."""
    ax.set_xlabel("epochs")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
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
