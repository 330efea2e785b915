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


# --------------------------------------------------------------------------- the command line in a subprocess

#: The package's source folder, for ``python -m alexnet`` subprocesses.
SRC = Path(__file__).resolve().parents[1] / "src"


def cli_env() -> dict[str, str]:
    """The environment of an ``alexnet`` subprocess: this source tree first on the path."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def cli_command(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "alexnet", *map(str, args)]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300):
    """Run ``alexnet ARGS`` in a subprocess; the CompletedProcess (text stdout and stderr)."""
    import subprocess

    return subprocess.run(cli_command(*args), cwd=cwd, env=cli_env(), capture_output=True, text=True,
                          timeout=timeout)


def start_cli(*args: str, cwd: Path | None = None, capture: bool = True):
    """Start ``alexnet ARGS`` in a subprocess; the Popen.  ``capture``: pipe stdout and stderr (else discard
    them: a process to be killed, whose orphaned children must not keep a pipe open)."""
    import subprocess

    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(cli_command(*args), cwd=cwd, env=cli_env(), stdout=out, stderr=out, text=True)


def one_line_error(stderr: str) -> str:
    """The one line of a user error (asserts that there is exactly one line and no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("note:", "warning:"))]
    assert len(lines) == 1 and "error:" in lines[0], stderr
    return lines[0]


def tiny_sets(*extra: str) -> list[str]:
    """``--set`` arguments of the tiny recipe (for ``alexnet train`` subprocesses), then ``extra``; with this
    process's torch thread count, so that the subprocess computes the same numbers as an in-process run."""
    threads = f"run.threads={torch.get_num_threads()}"
    return [arg for item in (*TINY_RECIPE, threads, *extra) for arg in ("--set", item)]


def wait_for(predicate, timeout: float = 120, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return False


def deterministic_records(run: Path) -> list[dict]:
    """The step and epoch records of ``run``'s metrics.jsonl without their timings (what a resume must repeat)."""
    import json

    timing = {"images_per_s", "data_wait", "seconds"}
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") in ("step", "epoch"):
            out.append({k: v for k, v in record.items() if k not in timing})
    return out


def same_training_state(a: Path, b: Path) -> None:
    """Assert that runs ``a`` and ``b`` end with the same weights, momentum, schedule, state and metrics."""
    from alexnet.inference.trained import read_checkpoint

    ca, cb = read_checkpoint(a / "checkpoints" / "last.pt"), read_checkpoint(b / "checkpoints" / "last.pt")
    assert ca["model"].keys() == cb["model"].keys()
    for key in ca["model"]:
        assert torch.equal(ca["model"][key], cb["model"][key]), key
    for k in ca["optimizer"]["state"]:
        assert torch.equal(ca["optimizer"]["state"][k]["velocity"], cb["optimizer"]["state"][k]["velocity"]), k
    assert ca["schedule"] == cb["schedule"]
    assert ca["state"] == cb["state"]
    assert deterministic_records(a) == deterministic_records(b)
