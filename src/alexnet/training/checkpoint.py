"""Writing checkpoints: atomic saves and every random state a training step touches.

A checkpoint is one ``torch.save`` file holding only tensors, numbers,
strings, lists and dicts, so it loads with ``weights_only=True`` (a checkpoint
from elsewhere cannot run code).  It is written to a temporary file in the
same folder, flushed to disk and renamed over the old one, so a kill at any
moment leaves the previous checkpoint intact.  Reading one (and opening a run):
:mod:`alexnet.inference.trained`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from alexnet.inference.trained import FORMAT, KIND  # noqa: F401 - the format is defined where it is read
from alexnet.runtime import atomic_write


def atomic_save(obj: Any, path: Path, *, previous: Path | None = None) -> None:
    """``torch.save`` to ``path`` via a temporary file and ``os.replace``.

    With ``previous``, the file ``path`` held until now is kept under that name (a hard link,
    so no copy and no moment without either file): the fallback when ``path`` is later damaged.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if previous is not None and path.is_file():
        link = previous.with_name(f".{previous.name}.tmp-{os.getpid()}")
        try:
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, previous)
        except OSError:  # a file system without hard links: no previous checkpoint is kept
            link.unlink(missing_ok=True)
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
