"""GPU throughput of the paper network, side by side in one process (issue 8's benchmark).

  (a) model     the paper network's training step on synthetic tensors already on
                the GPU: the model-only ceiling
  (b) pipeline  the full pipeline from a prepared store: uint8 batches read by
                DataLoader workers from memory-mapped shards, pinned, copied
                non-blocking, then §4.1 augmentation on the GPU over the whole batch
                (random crop, reflection, PCA colour noise, mean-image subtraction)
                feeding the same training step
  (c) baseline  torchvision's alexnet() fed by a pytorch/examples-style ImageFolder +
                PIL pipeline (RandomResizedCrop, flip, ToTensor, Normalize)

Prints images/s for each, the ratios b/a and b/c, peak GPU memory and the share
of (b)'s time spent waiting for data.  Levers: --amp bf16, --channels-last,
--compile (torch.compile of the model), cudnn.benchmark (always on), and the
fused Triton LRN (alexnet.net.lrn_triton, used on CUDA by default): (a) is measured a
second time with the LRN as separate passes, and the LRN layer alone (conv1's
maps, forward + backward) is timed three ways: fused Triton kernels, our passes,
and torch.nn.LocalResponseNorm.

Without --store it writes a synthetic store and a JPEG tree of generated images
(the demo's shapes at 256x256) into a temporary folder first, so it runs on a
bare GPU machine:

    python benchmarks/bench_gpu.py --amp bf16 --channels-last --workers 12
    python benchmarks/bench_gpu.py --device cpu --batch 8 --steps 2 --images 64   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.config import load_config
from alexnet.net.lrn import LocalResponseNorm, local_response_norm
from alexnet.data.batches import Augmentation, TrainBatches, loader
from alexnet.net.model import ModelSpec, build_model
from alexnet.training.optim import PaperSGD, param_groups
from alexnet.paper import ARCH, DATA, LEARNING, LRN_PARAMS
from alexnet.runtime import tune_cpu_allocator
from alexnet.data.store import Store


def synthetic_sources(folder: Path, images: int, classes: int = 10) -> tuple[Path, Path]:
    """A JPEG tree of generated 256x256 images and the store prepared from it."""
    from alexnet.data.sources.shapes import SHAPES, draw_shape
    from alexnet.data.prepare import prepare

    rng = np.random.default_rng(0)
    tree = folder / "jpeg" / "train"
    for i in range(images):
        shape = SHAPES[i % classes]
        (tree / shape).mkdir(parents=True, exist_ok=True)
        draw_shape(shape, DATA.image_size, rng).save(tree / shape / f"{i:06d}.JPEG", quality=90)
    store = folder / "store"
    prepare(folder / "jpeg", store, progress=False)
    return tree, store


class Step:
    """One training step of ``model`` with the paper's optimiser, optionally bf16 and channels-last."""

    def __init__(self, model: nn.Module, device: torch.device, amp: str, channels_last: bool, compile_: bool) -> None:
        self.model = model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = PaperSGD(param_groups(self.model, "paper", LEARNING.lr / 100, LEARNING.weight_decay,
                                         LEARNING.momentum))
        self.forward = torch.compile(self.model) if compile_ else self.model
        self.device, self.amp, self.channels_last = device, amp, channels_last

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp == "bf16" else nullcontext()
        with ctx:
            loss = nn.functional.cross_entropy(self.forward(x).float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_model_only(step: Step, batch: int, crop: int, classes: int, steps: int, warmup: int) -> float:
    x = torch.randn(batch, 3, crop, crop, device=step.device) * 50
    y = torch.randint(0, classes, (batch,), device=step.device)
    for _ in range(warmup):
        step(x, y)
    sync(step.device)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    sync(step.device)
    return batch * steps / (time.perf_counter() - start)


def set_lrn_engine(model: nn.Module, engine: str) -> None:
    """Point every LRN layer of ``model`` at one implementation (alexnet.net.lrn.ENGINES)."""
    for module in model.modules():
        if isinstance(module, LocalResponseNorm):
            module.engine = engine


def time_lrn(device: torch.device, batch: int, dtype: torch.dtype, channels_last: bool,
             repeats: int = 20) -> dict[str, float]:
    """Seconds per forward + backward of conv1's LRN (batch x 96 x 55 x 55, two columns), three ways."""
    from alexnet.net.lrn_triton import available

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    maps, size = ARCH.conv[0].out_channels, ARCH.conv1_output
    a = (torch.randn(batch, maps, size, size, device=device) * 20).to(dtype).contiguous(memory_format=fmt)
    g = torch.randn_like(a)
    p = LRN_PARAMS  # torch.nn divides alpha by n: the paper reading is alpha * n there
    reference = torch.nn.LocalResponseNorm(p.n, alpha=p.alpha * p.n, beta=p.beta, k=p.k)
    ways = {"passes": lambda x: local_response_norm(x, groups=ARCH.columns, engine="torch"),
            "torch.nn": lambda x: torch.cat([reference(h) for h in x.chunk(ARCH.columns, dim=1)], dim=1)}
    if device.type == "cuda" and available():
        ways = {"fused": lambda x: local_response_norm(x, groups=ARCH.columns, engine="triton"), **ways}
    out = {}
    for name, fn in ways.items():
        for i in range(repeats + 3):
            if i == 3:
                sync(device)
                start = time.perf_counter()
            x = a.detach().requires_grad_()
            fn(x).backward(g)
        sync(device)
        out[name] = (time.perf_counter() - start) / repeats
    return out


def run_pipeline(step: Step, store: Store, batch: int, steps: int, warmup: int, workers: int) -> tuple[float, float]:
    """(images/s, share of time waiting for data) of the store -> GPU augmentation -> step pipeline."""
    cfg = load_config("paper").data
    augment = Augmentation.from_config(cfg, store.stats(), "paper")
    split = store.split("train")
    epoch = 0
    wait = 0.0
    done = 0
    start = None
    pin = step.device.type == "cuda"
    while done < warmup + steps:
        ds = TrainBatches(split, batch_size=batch, seed=0, epoch=epoch, augment=augment, raw=True)
        t_wait = time.perf_counter()
        for i, (x, y) in enumerate(loader(ds, workers=workers, pin_memory=pin)):
            if done == warmup:
                sync(step.device)
                start, wait = time.perf_counter(), 0.0
                t_wait = start
            wait += time.perf_counter() - t_wait
            x = x.to(step.device, non_blocking=True)
            y = y.to(step.device, non_blocking=True)
            step(augment.train(x, ds.draws(i)), y)
            done += 1
            if done >= warmup + steps:
                break
            t_wait = time.perf_counter()
        epoch += 1
    sync(step.device)
    elapsed = time.perf_counter() - start
    return batch * steps / elapsed, wait / elapsed


def run_baseline(device: torch.device, tree: Path, batch: int, steps: int, warmup: int, workers: int,
                 amp: str, channels_last: bool) -> float:
    import torchvision
    from torchvision import transforms as T

    tf = T.Compose([T.RandomResizedCrop(DATA.crop_size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = torchvision.datasets.ImageFolder(str(tree), tf)
    step = Step(torchvision.models.alexnet(num_classes=len(ds.classes)), device, amp, channels_last, False)
    done, start = 0, None
    while done < warmup + steps:
        dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", drop_last=True)
        for x, y in dl:
            if done == warmup:
                sync(device)
                start = time.perf_counter()
            step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
            done += 1
            if done >= warmup + steps:
                break
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="a prepared store (default: a synthetic one)")
    parser.add_argument("--imagefolder", type=Path, help="JPEG class-folder tree for (c) (default: synthetic)")
    parser.add_argument("--images", type=int, default=4096, help="images to generate without --store")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=LEARNING.batch_size)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1))
    parser.add_argument("--amp", choices=("off", "bf16"), default="off")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    tune_cpu_allocator()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        tree, store_path = args.imagefolder, args.store
        if store_path is None or tree is None:
            gen_tree, gen_store = synthetic_sources(Path(tmp), args.images)
            tree, store_path = tree or gen_tree, store_path or gen_store
        store = Store(store_path)
        spec = ModelSpec(num_classes=store.num_classes)
        step = Step(build_model(spec), device, args.amp, args.channels_last, args.compile)
        a = run_model_only(step, args.batch, spec.input_size, spec.num_classes, args.steps, args.warmup)
        set_lrn_engine(step.model, "torch")
        a_passes = run_model_only(step, args.batch, spec.input_size, spec.num_classes, args.steps, args.warmup)
        set_lrn_engine(step.model, "auto")
        lrn = time_lrn(device, args.batch, torch.bfloat16 if args.amp == "bf16" else torch.float32,
                       args.channels_last)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        b, waiting = run_pipeline(step, store, args.batch, args.steps, args.warmup, args.workers)
        memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        c = run_baseline(device, tree, args.batch, args.steps, args.warmup, args.workers, args.amp,
                         args.channels_last)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}, torch {torch.__version__}, batch {args.batch}, amp {args.amp}, channels_last "
          f"{args.channels_last}, compile {args.compile}, {args.workers} workers, {args.steps} steps")
    print(f"  (a) model only, synthetic on device  {a:9.0f} images/s")
    print(f"      the same, LRN as separate passes  {a_passes:9.0f} images/s   (a / this = {a / a_passes:.2f})")
    fastest = min(lrn.values())
    print("  conv1 LRN forward+backward: " + ", ".join(
        f"{name} {1e3 * s:.2f} ms ({s / fastest:.2f}x)" for name, s in lrn.items()))
    print(f"  (b) store -> GPU augmentation -> step {b:9.0f} images/s   (waiting for data {100 * waiting:.0f}%)")
    print(f"  (c) torchvision alexnet + ImageFolder {c:9.0f} images/s")
    print(f"  b/a = {b / a:.2f}   b/c = {b / c:.2f}   peak GPU memory of (b) {memory:.1f} GiB")


if __name__ == "__main__":
    main()
