"""A training run's folder: how it is created, what it records, how it is read back for a resume.

    RUN/config.toml        the resolved configuration
    RUN/signal.txt         how signal and gradients propagate at initialisation (alexnet.net.propagation)
    RUN/run.json           reading, versions, seed, world size, store, classes, command
    RUN/metrics.jsonl      one JSON object per log line (alexnet.training.metrics)
    RUN/tensorboard/       TensorBoard event files
    RUN/checkpoints/       last.pt (the newest state), previous.pt (the one before) and best.pt
                           (lowest decision-split error)
    RUN/model.safetensors  final weights (+ RUN/model.json: the spec and classes)
    RUN/.lock              while a process trains the run (holder's pid inside; see runtime.FolderLock)

A folder that a run created but left without any checkpoint (it failed or was stopped
before its first) holds nothing worth keeping: ``--out`` reuses it and ``--resume`` trains
it again from the beginning with its ``config.toml``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexnet.config import Config, apply_overrides, config_from_dict, load_config, to_toml, validate
from alexnet.data.store import HOLDOUT_SPLIT, Store
from alexnet.errors import UserError
from alexnet.net.model import ModelSpec
from alexnet.paper import DATA
from alexnet.locks import LOCK_NAME, FolderLock
from alexnet.runtime import Dist, atomic_json, atomic_text, versions


@dataclass
class TrainState:
    """Where a run is: saved in every checkpoint, so that a resume continues exactly."""

    epoch: int = 0  # epoch in progress
    batch: int = 0  # next batch of that epoch
    step: int = 0  # optimisation steps so far
    best_top1: float = float("inf")
    done: bool = False
    stop_reason: str = ""
    lr_factor: float = 1.0  # the health check's multiplier on the schedule's rate (roll-backs)
    rollbacks: int = 0  # explosions rolled back so far
    decision_split: str = ""  # the split whose error best_top1 is (the training split when the store has no other)


#: Training patches smaller than this share of the stored image are refused (a store prepared for another preset).
MIN_CROP_FRACTION = 0.5


def model_spec(config: Config, store: Store) -> ModelSpec:
    """The network a config builds for a store (classes from the store, input size = the crop)."""
    m = config.model
    num_classes = m.num_classes or store.num_classes
    if num_classes != store.num_classes:
        raise UserError(f"is {num_classes} but store {store.path} has {store.num_classes} classes",
                        key="model.num_classes")
    if config.data.crop > store.image_size:
        raise UserError(f"{config.data.crop} is larger than the store's {store.image_size}x{store.image_size} images",
                        key="data.crop")
    if config.data.crop < MIN_CROP_FRACTION * store.image_size:
        # e.g. a 128-px preset on a 256-px store: it would train on quarter-size patches of each image
        # and test on centre patches a quarter of the image; almost surely the wrong store or preset.
        size = round(config.data.crop * DATA.image_size / DATA.crop_size)
        raise UserError(f"{config.data.crop} is less than half the store's {store.image_size}x{store.image_size} "
                        f"images: prepare the store with --size {size} (§2's ratio) or set data.crop",
                        key="data.crop")
    return ModelSpec(num_classes=num_classes, reading=m.reading, variants=tuple(m.variants),
                     input_size=config.data.crop, width=m.width, fc_units=m.fc_units, init=m.init, arch=m.arch,
                     dropout=m.dropout)


def run_info(config: Config, spec: ModelSpec, ctx: Dist, device: Any, store: Store) -> dict[str, Any]:
    """What ``RUN/run.json`` records."""
    return {
        "reading": spec.reading,
        "model_spec": spec.to_dict(),
        "seed": config.run.seed,
        "world_size": ctx.world,
        "device": str(device),
        "store": str(Path(config.data.store).resolve()),
        "classes": store.classes,
        "versions": versions(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


#: What a run writes before its first checkpoint: a folder holding only these is reused by ``--out``.
UNSTARTED = {"config.toml", "run.json", "metrics.jsonl", "tensorboard", "checkpoints", "signal.txt", LOCK_NAME}


def never_started(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only what a run writes before its first checkpoint (nothing to keep)."""
    names = {p.name for p in run_dir.iterdir()}
    ckpts = run_dir / "checkpoints"
    return names <= UNSTARTED and not (ckpts.is_dir() and any(p.suffix == ".pt" for p in ckpts.iterdir()))


def create_run_dir(run_dir: Path, config: Config, info: dict[str, Any], lock: FolderLock | None = None) -> None:
    """Create ``run_dir`` (locked with ``lock``) with its config and run.json.

    A UserError (nothing written) if it holds a run with a checkpoint or anything else; a
    folder a run left before its first checkpoint is cleared and reused.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if lock is not None:
            lock.acquire()
        if any(p.name != LOCK_NAME for p in run_dir.iterdir()):
            if not never_started(run_dir):
                raise UserError(f"run directory {run_dir} already exists and is not empty; "
                                f"continue it with `alexnet train --resume {run_dir}` or choose another", key="out")
            print(f"note: {run_dir} holds a run that stopped before its first checkpoint; starting it afresh",
                  file=sys.stderr)
            for p in run_dir.iterdir():
                if p.name != LOCK_NAME:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        atomic_text(run_dir / "config.toml", to_toml(config))
        atomic_json(run_dir / "run.json", info, indent=2)
    except OSError as err:
        if lock is not None:
            lock.release()
        why = "the disk is full" if err.errno == 28 else (err.strerror or str(err))
        raise UserError(f"cannot create run directory {run_dir}: {why}", key="out") from None
    except UserError:
        if lock is not None:
            lock.release()
        raise


def export_weights(run_dir: Path, model: Any, spec: ModelSpec, classes: list[tuple[str, str]]) -> None:
    """Final weights as safetensors plus the spec that rebuilds the network."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(run_dir / "model.safetensors"))
    (run_dir / "model.json").write_text(json.dumps({"model_spec": spec.to_dict(), "classes": classes}, indent=2))


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> Config:
    """The config of an existing run (from the checkpoint a resume would use), with optional overrides.

    A store recorded as a relative path (by older versions) that does not resolve from here is
    replaced by the absolute path in ``run.json``.
    """
    from alexnet.training.resume import read_resume_checkpoint

    run_dir = Path(run_dir)
    if run_dir.is_dir() and never_started(run_dir) and (run_dir / "config.toml").is_file():  # no checkpoint yet
        return validate(load_config(file=run_dir / "config.toml", overrides=overrides))
    data, _ = read_resume_checkpoint(run_dir)
    config = config_from_dict(data["config"])
    store = config.data.store
    if store and not Path(store).is_absolute() and not Path(store).is_dir():
        try:
            recorded = json.loads((run_dir / "run.json").read_text()).get("store", "")
        except (OSError, ValueError, AttributeError):
            recorded = ""
        if recorded and Path(recorded).is_dir():
            config.data.store = recorded
    return validate(apply_overrides(config, overrides))


def decision_split_warning(name: str | None) -> str:
    """What to tell the user about the split that decides rate drops, stopping and best.pt ('' when fine)."""
    if name is None:
        return "the store has no held-out split: the training error decides (prepare with --holdout N)"
    if name != HOLDOUT_SPLIT:
        return (f"decisions are made on {name!r}, the split errors are reported on: prepare the store with "
                f"--holdout N to keep them apart")
    return ""
