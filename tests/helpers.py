"""What several test modules share: small generated stores, the tiny network and recipe, stub models.

Test modules import from here (``from helpers import ...``; ``tests/`` is on the path),
never from one another.  The tiny network and recipe are defined once, here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

#: The real data beside the project (``../shared/data``; tests that need it skip when it is absent).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: The tiny network every test that trains or evaluates uses: 16x16 inputs, 1/8 of the kernels, 32 FC units.
TINY_SPEC = dict(input_size=16, width=0.125, fc_units=32)
#: The same network as config overrides.
TINY_MODEL = ["data.crop=16", "model.width=0.125", "model.fc_units=32"]
#: Settings that make a run of it take a second on the CPU (one epoch, batch 16, no health window).
TINY_RUN = ["data.workers=0", "optim.batch_size=16", "optim.lr=0.05", "schedule.max_epochs=1", "run.log_every=2",
            "run.health_window=0", "run.device=cpu", "run.amp=off"]  # float32: exact comparisons across runs
TINY_RECIPE = TINY_MODEL + TINY_RUN


def quadrant_images(n: int, size: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise images whose class is the bright quadrant (learnable in a few steps)."""
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    half = size // 2
    for i, c in enumerate(labels):
        r, q = divmod(int(c) % 4, 2)
        images[i, r * half:(r + 1) * half, q * half:(q + 1) * half] += np.uint8(120 + 30 * (c // 4))
    return images, labels


def make_store(path: Path, *, train: int = 96, val: int = 40, size: int = 20, classes: int = 4, seed: int = 0):
    """A store of quadrant images with train and val splits."""
    from alexnet.data.shards import write_store

    rng = np.random.default_rng(seed)
    return write_store(
        path,
        {"train": quadrant_images(train, size, classes, rng), "val": quadrant_images(val, size, classes, rng)},
        [(f"n{i:08d}", f"class {i}") for i in range(classes)],
    )


def tiny_config(store: Path | str, *extra: str):
    """The paper preset with the tiny network and run settings on ``store``, then ``extra`` overrides."""
    from alexnet.config import load_config

    return load_config("paper", [f'data.store="{store}"', *TINY_RECIPE, *extra])


def tiny_run(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Train the tiny recipe for one epoch on a fresh store in ``root``; (run directory, store path)."""
    from alexnet.training.trainer import train

    store = make_store(root / "store")
    run = root / f"run{seed}"
    train(tiny_config(store.path, f"run.seed={seed}"), run, progress=False)
    return run, store.path


def make_checkpoint(path: Path, store, *, seed: int = 0, **spec_kw) -> Path:
    """An untrained checkpoint for ``store`` in a run directory layout, as the trainer writes it but without
    the mean image: the mean is then found through the training store the config records."""
    from alexnet.config import Config
    from alexnet.inference.trained import FORMAT, KIND
    from alexnet.net.model import ModelSpec, build_model
    from alexnet.training.checkpoint import atomic_save

    spec = ModelSpec(num_classes=store.num_classes, **{**TINY_SPEC, **spec_kw})
    torch.manual_seed(seed)
    model = build_model(spec)
    config = Config()
    config.data.store, config.data.crop = str(store.path), spec.input_size
    ckpt = {"kind": KIND, "format": FORMAT, "model_spec": spec.to_dict(),
            "model": {k: v.clone() for k, v in model.state_dict().items()},
            "config": config.to_dict(), "classes": [list(c) for c in store.classes]}
    atomic_save(ckpt, path / "checkpoints" / "last.pt")
    return path


class FixedLogits(nn.Module):
    """A stub network: the same (N, C) logits for the N images of one batch, whatever the pixels."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.logits.shape[0]
        return self.logits if x.shape[0] == n else self.logits.repeat_interleave(x.shape[0] // n, 0)
