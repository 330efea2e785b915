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

Experiments whose finished sub-runs are measured by small JSON files
(``KEEPS_SUB_RUNS`` in the module) can also keep each finished sub-run's files in a
folder outside OUT (``--keep KEEP``, e.g. one committed beside the results files)::

    KEEP/experiment.json  experiment, budget and parameters it was made with
    KEEP/<sub>/result.json  (and final.json: the once-read test figures of a reported run)
    KEEP/<sub>/done.json, metrics.jsonl, eval-*/eval.json  (a run of the paper's network:
                          :func:`paper_net_kept_files`; never its weights)

and a later invocation with another OUT (a new machine) restores them instead of
training again, so an experiment of many CPU hours can be finished over several
sessions.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

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
    first_seed: int = 0  # seeds are first_seed .. first_seed + seeds - 1 (more seeds for a run made elsewhere)
    data_root: Path = field(default_factory=default_data_root)
    cache: Path = field(default_factory=default_cache)
    stores: dict[str, Path] = field(default_factory=dict)  # dataset name -> an existing store (tests, own data)
    progress: bool = False
    threads: int = 0
    workers: int = 0
    log: Callable[[str], None] = _log
    started: float = field(default_factory=time.perf_counter)
    runs: int = 0  # sub-runs trained or reused
    keep: Path | None = None  # finished sub-runs' results kept here too (and restored from here): KEEPS_SUB_RUNS

    def __post_init__(self) -> None:
        if self.budget not in BUDGETS:
            raise UserError(f"unknown value {self.budget!r}; allowed: {', '.join(BUDGETS)}", key="budget")
        if self.seeds is not None and self.seeds < 1:
            raise UserError(f"must be at least 1, got {self.seeds}", key="seeds")
        if self.first_seed < 0:
            raise UserError(f"must be at least 0, got {self.first_seed}", key="first-seed")
        self.out = Path(self.out)
        self.data_root = Path(self.data_root)
        self.cache = Path(self.cache)
        self.keep = None if self.keep is None else Path(self.keep)

    @property
    def quick(self) -> bool:
        return self.budget == "quick"

    def seed_list(self, default: dict[str, int]) -> list[int]:
        n = self.seeds if self.seeds is not None else default[self.budget]
        return list(range(self.first_seed, self.first_seed + n))

    def run_dir(self, sub: str) -> Path:
        return self.out / "runs" / sub


# --------------------------------------------------------------------------- kept sub-runs

#: The files a kept sub-run consists of, where present (see the module docstring); never weights.
KEPT_FILES = ("result.json", "final.json")


def paper_net_kept_files(splits: Sequence[str]) -> tuple[str, ...]:
    """The files a kept run of the paper's network consists of, where present: its curves, the cached
    evaluations of ``splits`` (of ``last.pt`` or ``best.pt``, :func:`subruns.evaluate_sub_run`'s folders) and
    ``done.json`` last, so that a kept folder with ``done.json`` has the rest (copies go in this order)."""
    evals = tuple(f"eval-{split}{suffix}/eval.json" for split in splits for suffix in ("", "-best"))
    return ("metrics.jsonl", *evals, "done.json")


def open_keep(ctx: Context, params: dict[str, Any], neutral: Sequence[str] = ()) -> None:
    """Make (or check) ``ctx.keep`` for this experiment, budget and parameters; one line naming the folder and
    the first difference when it holds another experiment's sub-runs (whose results would then be wrong here).

    ``neutral``: parameters that only select which sub-runs run (``arms``: the arm is in each sub-run's name),
    so one session may run one arm and the next another into the same folder."""
    if ctx.keep is None:
        return
    if ctx.keep.exists() and not ctx.keep.is_dir():
        raise UserError(f"{ctx.keep}: not a folder", key="keep")
    info = {"experiment": ctx.name, "budget": ctx.budget, "params": params}
    path = ctx.keep / "experiment.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not readable as JSON ({e})", key="keep") from None
        for key in ("experiment", "budget"):
            if old.get(key) != info[key]:
                raise UserError(f"{ctx.keep} keeps sub-runs of {key} {old.get(key)!r}, not {info[key]!r}; "
                                f"use another folder", key="keep")
        old_params = old.get("params", {})
        for key in sorted((set(old_params) | set(params)) - set(neutral)):
            if old_params.get(key) != params.get(key):
                raise UserError(f"{ctx.keep} keeps sub-runs made with {key}={old_params.get(key)!r}, this run has "
                                f"{key}={params.get(key)!r}; use another folder", key="keep")
        return
    from alexnet.runtime import atomic_json

    ctx.keep.mkdir(parents=True, exist_ok=True)
    atomic_json(path, info, indent=2)


@contextmanager
def kept_sub_run(ctx: Context, sub: str, *, restore: bool = True,
                 files: Sequence[str] = KEPT_FILES) -> Iterator[None]:
    """Around one sub-run: restore its kept ``files`` first (unless ``restore`` is false), keep them after.

    A restored file that the sub-run then refuses (a :class:`UserError` naming the copy in the run folder) is
    named in the error with the kept file it came from: removing only the copy would bring it back next time."""
    restored = restore_kept(ctx, sub, files) if restore else []
    try:
        yield
    except UserError as e:
        # restored is empty without --keep
        if any(str(ctx.run_dir(sub) / name) in e.message for name in restored):
            raise UserError(f"{e.message} (restored from {ctx.keep / sub}: remove it there too, or use another "
                            f"--keep folder)", key=e.key) from None
        raise
    keep_finished(ctx, sub, files)


def restore_kept(ctx: Context, sub: str, files: Sequence[str] = KEPT_FILES) -> list[str]:
    """Before a sub-run: copy its kept ``files`` into ``OUT/runs/<sub>/`` unless that holds them already; the
    names of the files copied."""
    if ctx.keep is None:
        return []
    return _copy_kept(ctx.keep / sub, ctx.run_dir(sub), files, replace_changed=False)


def is_kept(ctx: Context, sub: str, name: str) -> bool:
    """Whether ``--keep`` holds file ``name`` of sub-run ``sub``."""
    return ctx.keep is not None and (ctx.keep / sub / name).is_file()


def keep_finished(ctx: Context, sub: str, files: Sequence[str] = KEPT_FILES) -> None:
    """After a sub-run (or its final measurement): copy its ``files`` into ``KEEP/<sub>/``, in that order (each
    atomically: an interrupted copy leaves none)."""
    if ctx.keep is not None:
        _copy_kept(ctx.run_dir(sub), ctx.keep / sub, files, replace_changed=True)


def _copy_kept(source: Path, target: Path, files: Sequence[str], *, replace_changed: bool) -> list[str]:
    """Copy each of ``files`` (names relative to the sub-run folder) that ``source`` has to ``target`` where
    missing there (or, with ``replace_changed``, different), atomically; the names of the files copied."""
    from alexnet.runtime import atomic_text

    copied = []
    for name in files:
        if not (source / name).is_file():
            continue
        text = (source / name).read_text()
        if not (target / name).is_file() or (replace_changed and (target / name).read_text() != text):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            atomic_text(target / name, text)
            copied.append(name)
    return copied


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


def names_of(text: str, known: Iterable[str], what: str, item: str = "") -> list[str]:
    """A ``--param`` list like ``"a,b"`` of names from ``known``; one line naming the first unknown one (or an empty list).

    ``what`` is the parameter, ``item`` what one name is (``arms: unknown arm 'x'; allowed: ...``).
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = list(known)
    for n in names or [text]:
        if n not in known:
            raise UserError(f"{what}: unknown {item + ' ' if item else ''}{n!r}; allowed: {', '.join(known)}",
                            key="param")
    return names


def record_head(ctx: Context, seeds: list[int], threads: int | None = None) -> dict[str, Any]:
    """The fields every results record starts with: the command as typed, the environment, the verdict rule, seeds."""
    from alexnet.experiments import record
    from alexnet.runtime import environment

    return {"command": " ".join(["alexnet", *sys.argv[1:]]),
            "environment": environment(ctx.threads if threads is None else threads),
            "rule": record.RULE, "seeds": seeds}


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
