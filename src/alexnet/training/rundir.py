"""A training run's folder: how it is created, what it records, how it is read back for a resume.

    RUN/config.toml        the resolved configuration
    RUN/run.json           reading, versions, seed, world size, store, classes, command
    RUN/metrics.jsonl      one JSON object per log line (alexnet.training.metrics)
    RUN/tensorboard/       TensorBoard event files
    RUN/checkpoints/       last.pt (the newest state) and best.pt (lowest decision-split error)
    RUN/model.safetensors  final weights (+ RUN/model.json: the spec and classes)
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexnet.config import Config, apply_overrides, config_from_dict, to_toml
from alexnet.data.store import Store
from alexnet.errors import UserError
from alexnet.inference.trained import read_checkpoint
from alexnet.net.model import ModelSpec
from alexnet.runtime import Dist, versions


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
    return ModelSpec(num_classes=num_classes, reading=m.reading, variants=tuple(m.variants),
                     input_size=config.data.crop, width=m.width, fc_units=m.fc_units, init=m.init, arch=m.arch)


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


def create_run_dir(run_dir: Path, config: Config, info: dict[str, Any]) -> None:
    """Create ``run_dir`` with its config and run.json; a UserError if it already holds something."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"run directory {run_dir} already exists and is not empty; "
                        f"continue it with `alexnet train --resume {run_dir}` or choose another", key="out")
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(to_toml(config))
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))


def export_weights(run_dir: Path, model: Any, spec: ModelSpec, classes: list[tuple[str, str]]) -> None:
    """Final weights as safetensors plus the spec that rebuilds the network."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(run_dir / "model.safetensors"))
    (run_dir / "model.json").write_text(json.dumps({"model_spec": spec.to_dict(), "classes": classes}, indent=2))


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> Config:
    """The config of an existing run (from its last checkpoint), with optional overrides."""
    data = read_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")
    return apply_overrides(config_from_dict(data["config"]), overrides)
