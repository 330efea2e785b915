"""Input pipeline and training step with real data, side by side (issue 4's benchmark).

In one run, on the same images (Imagenette from ../shared/data by default):

  store      our pipeline: uint8 batches read from a prepared store (memory-mapped
             shards) + §4.1 augmentation (random 224 crop, reflection, PCA colour
             noise, mean-image subtraction), one process, one thread
  folder     the pytorch/examples pipeline: torchvision ImageFolder + PIL
             (RandomResizedCrop 224, RandomHorizontalFlip, ToTensor, Normalize),
             one process, one thread

and then the training step of a network fed by our loader (real data, DataLoader
workers) beside the same step on synthetic tensors.  Prints images/s per core
and the ratios store/folder and real/synthetic.

    python benchmarks/bench_pipeline.py [--images 512] [--batch 128] [--width 0.5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from alexnet.config import load_config
from alexnet.data.batches import Augmentation, TrainBatches, loader
from alexnet.net.model import ModelSpec, build_model
from alexnet.training.optim import PaperSGD, param_groups
from alexnet.paper import DATA
from alexnet.data.prepare import prepare
from alexnet.runtime import tune_cpu_allocator
from alexnet.data.store import Store

DEFAULT_SRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette-224" / "train"


def subset_tree(src: Path, dst: Path, images: int) -> Path:
    """Symlink ``images`` files (round-robin over classes) into a class-folder tree."""
    classes = sorted(p for p in src.iterdir() if p.is_dir())
    files = {c: sorted(c.iterdir()) for c in classes}
    taken = 0
    i = 0
    while taken < images:
        for c in classes:
            if i < len(files[c]) and taken < images:
                (dst / c.name).mkdir(parents=True, exist_ok=True)
                (dst / c.name / files[c][i].name).symlink_to(files[c][i])
                taken += 1
        i += 1
    return dst


def time_store(store: Store, batch: int, rounds: int) -> float:
    split = store.split("train")
    augment = Augmentation.from_config(load_config("paper").data, store.stats(), "paper")
    ds = TrainBatches(split, batch_size=batch, seed=0, epoch=0, augment=augment)
    n = 0
    start = time.perf_counter()
    for r in range(rounds):
        for i in range(len(ds)):
            x, _ = ds[i]
            n += x.shape[0]
    return n / (time.perf_counter() - start)


def time_folder(root: Path, rounds: int) -> float:
    import torchvision
    from torchvision import transforms as T

    tf = T.Compose([T.RandomResizedCrop(DATA.crop_size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = torchvision.datasets.ImageFolder(str(root), tf)
    n = 0
    start = time.perf_counter()
    for _ in range(rounds):
        for i in range(len(ds)):
            ds[i]
            n += 1
    return n / (time.perf_counter() - start)


def time_training(store: Store, spec: ModelSpec, batch: int, steps: int, real: bool, workers: int) -> float:
    torch.manual_seed(0)
    model = build_model(spec)
    opt = PaperSGD(param_groups(model, "paper", 0.001, 0.0005, 0.9))
    split = store.split("train")
    cfg = load_config("paper", [f"data.crop={spec.input_size}"]).data
    augment = Augmentation.from_config(cfg, store.stats(), "paper")
    ds = TrainBatches(split, batch_size=batch, seed=0, epoch=0, augment=augment)
    synthetic = (torch.randn(batch, 3, spec.input_size, spec.input_size) * 50,
                 torch.randint(0, spec.num_classes, (batch,)))
    batches = iter(loader(ds, workers=workers)) if real else None
    done = 0
    start = None
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()  # the first step warms up (and starts the workers)
        if real:
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader(ds, workers=workers))
                x, y = next(batches)
        else:
            x, y = synthetic
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        done += batch if step else 0
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="class-folder tree of JPEGs")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--width", type=float, default=1.0, help="network width for the training-step part")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    tune_cpu_allocator()
    if not args.src.is_dir():
        raise SystemExit(f"{args.src} does not exist: pass --src with a class-folder tree of JPEGs")
    with tempfile.TemporaryDirectory() as tmp:
        tree = subset_tree(args.src, Path(tmp) / "tree", args.images)
        store = prepare(tree, Path(tmp) / "store", progress=False)
        store = Store(Path(tmp) / "store")
        torch.set_num_threads(1)
        s1 = time_store(store, args.batch, 1)  # warm the page cache and the allocator
        f1 = time_folder(tree, 1)
        s, f = [], []
        for _ in range(args.rounds):  # interleaved, so machine noise hits both
            s.append(time_store(store, args.batch, 1))
            f.append(time_folder(tree, 1))
        store_ips, folder_ips = max(s + [s1]), max(f + [f1])
        print(f"input pipeline, one process, one thread, {args.images} Imagenette images, batch {args.batch}:")
        print(f"  store + §4.1 augmentation   {store_ips:8.0f} images/s per core")
        print(f"  ImageFolder + PIL           {folder_ips:8.0f} images/s per core")
        print(f"  ratio store/folder = {store_ips / folder_ips:.1f}")
        torch.set_num_threads(os.cpu_count() or 1)
        spec = ModelSpec(num_classes=store.num_classes, width=args.width)
        real, synth = [], []
        for _ in range(2):
            synth.append(time_training(store, spec, args.train_batch, args.steps, False, args.workers))
            real.append(time_training(store, spec, args.train_batch, args.steps, True, args.workers))
        print(f"training step, width {args.width}, batch {args.train_batch}, {torch.get_num_threads()} threads, "
              f"{args.workers} loader worker(s):")
        print(f"  synthetic tensors {max(synth):7.1f} images/s")
        print(f"  real data         {max(real):7.1f} images/s")
        print(f"  ratio real/synthetic = {max(real) / max(synth):.2f}")


if __name__ == "__main__":
    main()
