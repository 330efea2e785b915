"""Checkpoints: atomic writes, every RNG, and loading that names what disagrees.

A checkpoint is one ``torch.save`` file holding only tensors, numbers,
strings, lists and dicts, so it loads with ``weights_only=True`` (a checkpoint
from elsewhere cannot run code).  It is written to a temporary file in the
same folder, flushed to disk and renamed over the old one, so a kill at any
moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.runtime import atomic_write
from alexnet.net.model import AlexNet, ModelSpec, build_model

FORMAT = 1
KIND = "alexnet-checkpoint"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` via a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f))


def rng_state() -> dict[str, Any]:
    """Every RNG a training step touches: torch (CPU and CUDA), NumPy, Python."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": _python_state_to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state_to_lists(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP's ``module.`` (and torch.compile's ``_orig_mod.``) prefixes."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file; a clear error if it is missing or not ours."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged or foreign file
        raise UserError(f"{path} is not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise UserError(f"{path} is not an alexnet checkpoint")
    data["path"] = str(path)
    return data


def check_compatible(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Raise a UserError naming the first layer whose parameters disagree."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    extra = [k for k in state_dict if k not in own]
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which this network does not"
        raise UserError(f"{source}: checkpoint is for another architecture: it {what}")
    for key, value in own.items():
        if tuple(state_dict[key].shape) != tuple(value.shape):
            raise UserError(
                f"{source}: layer {key.rsplit('.', 1)[0]} disagrees: checkpoint {tuple(state_dict[key].shape)}, "
                f"network {tuple(value.shape)}"
            )


def load_model(path: str | Path) -> tuple[AlexNet, dict[str, Any]]:
    """Rebuild the network a checkpoint (or run directory) was trained as, with its weights."""
    data = load_file(path)
    spec = ModelSpec.from_dict(data["model_spec"])
    model = build_model(spec)
    state = strip_module_prefix(data["model"])
    check_compatible(model, state, data["path"])
    model.load_state_dict(state)
    return model, data
