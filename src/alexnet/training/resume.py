"""Resuming a run: which checkpoint, which config changes a resume may make, and the log trimmed to it.

**The checkpoint.**  ``RUN/checkpoints/last.pt`` is the newest state; every save first
keeps the one before as ``previous.pt`` (a hard link, no copy).  When ``last.pt`` is
missing or damaged, the newer of ``previous.pt`` and ``best.pt`` that reads is used, with
a warning (:func:`read_resume_checkpoint`).

**The rule for ``--resume --set``** (:data:`RESUMABLE`): the keys below may change when a
run is resumed; each change is applied from the resumed step on and logged as a
``config_changed`` event in ``metrics.jsonl``.  Any other key is part of what was
trained (network, data, recipe, seed) and is refused with one line; train a new run
with ``--out`` to change it.

**The log.**  A resume drops the records that the checkpoint does not cover (steps and
epochs after it, written before the interruption, and a last line cut short by a kill),
then writes a ``resumed`` event: ``metrics.jsonl`` never holds a step twice.
"""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from alexnet.config import Config, config_from_dict, to_toml
from alexnet.errors import UserError
from alexnet.inference.trained import FORMAT, KIND, check_compatible, read_checkpoint, strip_module_prefix
from alexnet.net.model import ModelSpec
from alexnet.runtime import atomic_text
from alexnet.training.checkpoint import atomic_save, set_rng_state
from alexnet.training.rundir import TrainState, never_started

#: Checkpoint files of a run, newest first: the last state, the one before it, the best one.
LAST, PREVIOUS, BEST = "last.pt", "previous.pt", "best.pt"

#: Keys that ``train --resume RUN --set KEY=VALUE`` may change, and what the change does.
RESUMABLE: dict[str, str] = {
    "optim.lr": "the learning rate from the resumed step on (later drops divide it; a roll-back factor is reset)",
    "schedule.max_epochs": "the last epoch (a run that stopped at max_epochs continues when it is raised)",
    "schedule.patience": "epochs without improvement before the rate is divided",
    "schedule.min_improvement": "what counts as an improvement",
    "schedule.max_reductions": "rate divisions before the plateau schedule stops",
    "data.store": "the same store moved to another path (its manifest must be identical)",
    "data.workers": "DataLoader processes", "data.verify": "store checks before training",
    "run.device": "where to train", "run.threads": "torch threads", "run.compile": "torch.compile",
    "run.checkpoint_every": "in-epoch checkpoints", "run.log_every": "metrics lines",
    "run.max_steps": "the step budget", "run.health_window": "the stuck-at-chance check",
    "run.snapshot_every": "roll-back snapshots", "run.max_rollbacks": "roll-backs allowed",
    "run.rollback_lr_factor": "the rate factor of a roll-back",
}


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, table in config.items() for key, value in table.items()}


def read_resume_checkpoint(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The checkpoint to resume ``run_dir`` from, and a warning when it is not ``last.pt``.

    A UserError when there is none, or none of them reads.  (A run that stopped before its first
    checkpoint is started again by ``--resume`` and ``--out`` alike: :func:`open_for_resume`.)
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist", key="resume")
    folder = run_dir / "checkpoints"
    present = [name for name in (LAST, PREVIOUS, BEST) if (folder / name).is_file()]
    if not present:
        if not (run_dir / "config.toml").is_file():
            raise UserError(f"{run_dir} is not a run directory (it has no config.toml)", key="resume")
        raise UserError(f"{run_dir} has no checkpoint left in {folder} (last.pt, previous.pt and best.pt are "
                        f"gone); train a new run with --out", key="resume")
    readable: dict[str, dict[str, Any]] = {}
    damaged: list[str] = []
    for name in present:
        try:
            readable[name] = read_checkpoint(folder / name)
        except UserError as err:
            damaged.append(str(err))
            if name == LAST:
                continue
    if LAST in readable:
        return readable[LAST], None
    if not readable:
        raise UserError(f"no checkpoint of {run_dir} is intact: {'; '.join(damaged)}")
    name = max(readable, key=lambda n: int(readable[n].get("state", {}).get("step", -1)))
    step = readable[name].get("state", {}).get("step", "?")
    problem = damaged[0] if damaged else f"{folder / LAST} is missing"
    return readable[name], f"{problem}; resuming from {name} (step {step}) instead"


def config_changes(saved: dict[str, Any], config: Config) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for every key ``config`` changes against the checkpoint's ``saved`` config.

    A UserError naming the first key that a resume may not change (:data:`RESUMABLE`).
    """
    old, new = _flat(config_from_dict(saved).to_dict()), _flat(config.to_dict())
    changes = []
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        if key not in RESUMABLE:
            raise UserError(f"cannot change on --resume: the run was trained with {before!r} (keys a resume may "
                            f"change: {', '.join(RESUMABLE)}); train a new run with --out for {value!r}", key=key)
        changes.append((key, before, value))
    return changes


def apply_changes(changes: list[tuple[str, Any, Any]], schedule: Any, state: Any) -> list[dict[str, Any]]:
    """Apply resume changes to the schedule and the run's state; the ``config_changed`` events to log."""
    events = []
    for key, old, new in changes:
        if key == "optim.lr":
            schedule.set_lr(new)
            state.lr_factor = 1.0
        elif key == "schedule.max_epochs":
            begun = state.epoch + (1 if state.batch else 0)
            if new < begun:
                raise UserError(f"{new} is fewer than the {begun} epochs the run has already begun",
                                key="schedule.max_epochs")
            schedule.set_max_epochs(new)
            if state.done and state.stop_reason.startswith("reached max_epochs") and new > state.epoch:
                state.done, state.stop_reason, schedule.stopped = False, "", False
            elif not state.done and new == state.epoch:
                state.done, state.stop_reason, schedule.stopped = True, f"reached max_epochs {new}", True
        elif key.startswith("schedule.") and hasattr(schedule, key.split(".", 1)[1]):
            setattr(schedule, key.split(".", 1)[1], new)
        events.append({"kind": "event", "event": "config_changed", "key": key, "old": old, "new": new,
                       "step": state.step})
    return events


def check_same_store(recorded: dict[str, Any] | None, path: str, digest: str) -> None:
    """A UserError when the store at ``path`` is not the one the run trained on (another manifest)."""
    if recorded and recorded.get("manifest_sha256") and recorded["manifest_sha256"] != digest:
        raise UserError(f"store {path} is not the store this run was trained on ({recorded.get('path')}): its "
                        f"manifest.json differs (re-prepared or another store); resuming on it would silently "
                        f"change the training data. Train a new run with --out", key="data.store")


def trim_metrics(run_dir: Path, step: int, epoch: int) -> int:
    """Drop the records of ``metrics.jsonl`` that come after the checkpoint (step ``step``, ``epoch``
    completed epochs) and any line cut short; returns how many lines were dropped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            dropped += bool(line.strip())
            continue
        late = isinstance(record, dict) and (
            int(record.get("step", 0) or 0) > step or (record.get("kind") == "epoch" and record.get("epoch", 0) > epoch))
        if late:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        atomic_text(path, "".join(f"{line}\n" for line in kept))
    return dropped


def remove_temporaries(run_dir: Path) -> list[str]:
    """Remove the temporary checkpoint files a kill left behind (``.last.pt.tmp-PID``); their names."""
    folder = Path(run_dir) / "checkpoints"
    removed = []
    for p in folder.glob(".*.tmp-*") if folder.is_dir() else []:
        try:
            p.unlink()
            removed.append(p.name)
        except OSError:
            pass
    return removed


# --------------------------------------------------------------------------- a trainer's checkpoints


def checkpoint_dict(trainer: Any, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything a resume needs: weights, optimizer, schedule, state, every rank's random state and epoch sums."""
    return {
        "kind": KIND,
        "format": FORMAT,
        "model_spec": trainer.spec.to_dict(),
        "model": {k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()},
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict(),
        "state": dict(trainer.state.__dict__),
        "rng": ranks[0]["rng"],  # rank 0's (read by older versions)
        "ranks": ranks,
        "health": trainer.health.state_dict() if hasattr(trainer, "health") else {},
        "store": {"path": str(trainer.store.path), "manifest_sha256": trainer.store_digest},
        "config": trainer.config.to_dict(),
        "classes": [list(c) for c in trainer.store.classes],
        # so that eval, predict and export work after the training store is gone
        "mean_image": torch.from_numpy(np.asarray(trainer.store.stats().mean_image, dtype=np.float32)),
    }


def save_checkpoint(trainer: Any, name: str = LAST) -> None:
    """Gather every rank's state on rank 0, which writes ``RUN/checkpoints/name`` atomically (``last.pt``
    keeps the one before as ``previous.pt``); a failed write is one line and leaves the earlier ones intact."""
    mine = trainer._rank_state()
    ranks = [mine]
    if trainer.ctx.world > 1:
        ranks = [None] * trainer.ctx.world
        dist.all_gather_object(ranks, mine)
    if not trainer.ctx.main:
        return
    path = trainer.run_dir / "checkpoints" / name
    try:
        atomic_save(checkpoint_dict(trainer, ranks), path, previous=path.with_name(PREVIOUS) if name == LAST else None)
    except OSError as err:
        why = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise UserError(f"cannot write checkpoint {path}: {why}; the checkpoints written before are intact "
                        f"(then `alexnet train --resume {trainer.run_dir}`)") from None


def open_for_resume(trainer: Any) -> tuple[dict[str, Any], str | None, list[tuple[str, Any, Any]]] | None:
    """Lock the run (rank 0), read the checkpoint to resume from, check the config against it (the ``--set``
    rule), before anything is built: (checkpoint, warning, changes).  None for a run that stopped before
    its first checkpoint: it starts again from the beginning."""
    if not Path(trainer.run_dir).is_dir():
        raise UserError(f"run directory {trainer.run_dir} does not exist", key="resume")
    trainer._on_main(trainer.lock.acquire)  # no other process writes the run from now on
    if never_started(trainer.run_dir) and (Path(trainer.run_dir) / "config.toml").is_file():
        if trainer.ctx.main:
            print(f"note: {trainer.run_dir} has no checkpoint (it stopped before its first): training it from the "
                  f"beginning", file=sys.stderr)
        return None
    data, warning = read_resume_checkpoint(trainer.run_dir)
    changes = config_changes(data["config"], trainer.config)
    return data, warning, changes


def restore(trainer: Any, saved: tuple[dict[str, Any], str | None, list[tuple[str, Any, Any]]]) -> list[dict[str, Any]]:
    """Load the checkpoint into ``trainer`` (:func:`open_for_resume`); the events to log once the log is open."""
    data, warning, changes = saved
    main = trainer.ctx.main
    if warning and main:
        print(f"warning: {warning}", file=sys.stderr)
    check_same_store(data.get("store"), trainer.config.data.store, trainer.store_digest)
    spec = ModelSpec.from_dict(data["model_spec"])
    if spec != trainer.spec:
        raise UserError(f"{data['path']}: checkpoint was trained as {spec}, but the config now builds {trainer.spec}")
    weights = strip_module_prefix(data["model"])
    check_compatible(trainer.model, weights, data["path"])
    trainer.model.load_state_dict(weights)
    trainer.optimizer.load_state_dict(data["optimizer"])
    trainer.schedule.load_state_dict(data["schedule"])
    trainer.state = TrainState(**{**data["state"], "decision_split": trainer.state.decision_split})
    trainer._saved_health = data.get("health") or {}
    ranks = data.get("ranks") or [{"rng": data["rng"]}]
    world, rank = trainer.ctx.world, trainer.ctx.rank
    if len(ranks) == world:
        mine = ranks[rank]
    else:  # another number of processes: the same data order, other dropout draws
        if main:
            print(f"warning: the checkpoint was written by {len(ranks)} processes, this run has {world}: it "
                  f"continues, but not bit-identically", file=sys.stderr)
        sums = np.sum([r.get("epoch_sums", np.zeros(3)) for r in ranks], 0)
        mine = {"rng": data["rng"], "epoch_sums": sums} if main else {"epoch_sums": np.zeros(3)}
    if "rng" in mine:
        set_rng_state(mine["rng"])
    else:  # each rank its own dropout stream
        torch.manual_seed(trainer.config.run.seed + rank + 7919 * trainer.state.step)
    trainer.epoch_sums[:] = mine.get("epoch_sums", 0)
    trainer.window[:] = mine.get("window", 0)
    events = apply_changes(changes, trainer.schedule, trainer.state)
    removed: list[str] = []
    if main:
        removed = remove_temporaries(trainer.run_dir)
        trim_metrics(trainer.run_dir, trainer.state.step, trainer.state.epoch)
        if changes:
            atomic_text(trainer.run_dir / "config.toml", to_toml(trainer.config))
        for event in events:
            print(f"resume: {event['key']} changed from {event['old']!r} to {event['new']!r}", file=sys.stderr)
    resumed = {"kind": "event", "event": "resumed", "step": trainer.state.step, "epoch": trainer.state.epoch + 1,
               "batch": trainer.state.batch, "checkpoint": Path(data["path"]).name, "warning": warning or "",
               "removed_temporaries": removed}
    return [resumed, *events]
