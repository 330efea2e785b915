"""Benchmark `alexnet prepare` on the real ImageNet sample (not a test).

    .venv/bin/python benchmarks/bench_prepare.py [--repeat 3]

Measures, on the same files, images/s per core of
  (a)  the plain PIL pipeline a user would write (open, convert RGB, resize shorter
       side to 256 with PIL's default filter, centre-crop, to array), and (a') the
       same saving a JPEG, as dataset-resizing scripts do;
  (b)  our per-image function (alexnet.data.images.load_image), one process;
then `prepare` with 1 and 2 workers, the ratio b/a, the same on a "large" copy of
the sample (every image upscaled 2.5x and re-encoded, like full-size photographs,
where the reduced-scale DCT decode matters), and for the two store formats the
size per image on disk and random-read images/s (one thread).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.paper import DATA
from alexnet.data.prepare import prepare
from alexnet.data.images import load_image, plain_pipeline
from alexnet.data.store import Store

SAMPLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet-sample"


def _rate(fn, files: list[Path], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for f in files:
            fn(f)
        best = min(best, time.perf_counter() - t)
    return len(files) / best


def _plain_jpeg(path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(plain_pipeline(path, DATA.image_size)).save(buf, "JPEG", quality=95)


def _tree(files: list[Path], root: Path) -> Path:
    for f in files:
        d = root / "train" / f.name.split("_")[0]
        d.mkdir(parents=True, exist_ok=True)
        os.symlink(f.resolve(), d / f.name)
    return root


def _prepare_rate(src: Path, out: Path, workers: int, repeat: int, fmt: str = "npy") -> float:
    best = float("inf")
    for _ in range(repeat):
        if out.exists():
            import shutil

            shutil.rmtree(out)
        t = time.perf_counter()
        report = prepare(src, out, workers=workers, shard_size=10, progress=False, fmt=fmt)
        best = min(best, time.perf_counter() - t)
    return sum(report.counts.values()) / best


def _store_numbers(out: Path, repeat: int) -> tuple[float, float]:
    store = Store(out)
    split = store.split("train")
    n = len(split)
    size = sum(p.stat().st_size for p in (out / "train").glob("shard-*.npy"))
    rng = np.random.default_rng(0)
    best = float("inf")
    for _ in range(repeat):
        fresh = Store(out).split("train")
        t = time.perf_counter()
        for _ in range(4):
            perm = rng.permutation(n)
            for s in range(0, n, 32):
                fresh.read(perm[s : s + 32])
        best = min(best, time.perf_counter() - t)
    return size / n, 4 * n / best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    if not SAMPLE.is_dir():
        print(f"skip: {SAMPLE} not found", file=sys.stderr)
        return 0
    torch.set_num_threads(1)
    files = sorted(SAMPLE.glob("*.JPEG"))
    size = DATA.image_size
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        big_dir = tmp / "big"
        big_dir.mkdir()
        for f in files:  # a full-size-photograph stand-in: 2.5x larger, re-encoded
            with Image.open(f) as im:
                im.resize((int(im.width * 2.5), int(im.height * 2.5)), Image.BICUBIC).save(big_dir / f.name, quality=90)
        big = sorted(big_dir.glob("*.JPEG"))

        a = _rate(lambda f: plain_pipeline(f, size), files, args.repeat)
        a_jpg = _rate(_plain_jpeg, files, args.repeat)
        b = _rate(lambda f: load_image(f, size), files, args.repeat)
        rows += [("(a) plain PIL, to array", a, "1.00x"), ("(a') plain PIL, saved as JPEG", a_jpg, f"{a_jpg / a:.2f}x"),
                 ("(b) load_image, 1 process", b, f"{b / a:.2f}x")]
        src = _tree(files, tmp / "src")
        p1 = _prepare_rate(src, tmp / "out1", 1, args.repeat)
        p2 = _prepare_rate(src, tmp / "out2", 2, args.repeat)
        rows += [("prepare --workers 1 (per core)", p1, f"{p1 / a:.2f}x"),
                 ("prepare --workers 2 (total)", p2, f"{p2 / a:.2f}x total, {p2 / 2 / a:.2f}x per core"),
                 ("prepare scaling 2 vs 1 workers", p2 / p1, "")]
        a_big = _rate(lambda f: plain_pipeline(f, size), big, max(1, args.repeat - 1))
        b_big = _rate(lambda f: load_image(f, size), big, max(1, args.repeat - 1))
        rows += [("large copy: (a) plain PIL", a_big, "1.00x"), ("large copy: (b) load_image", b_big, f"{b_big / a_big:.2f}x")]

        npy_bytes, npy_read = _store_numbers(tmp / "out2", args.repeat)
        _prepare_rate(src, tmp / "outj", 2, 1, fmt="jpeg")
        jpg_bytes, jpg_read = _store_numbers(tmp / "outj", args.repeat)

    print(f"imagenet-sample: {len(files)} images, {os.cpu_count()} cores, torch {torch.__version__}\n")
    print(f"| {'measurement':<34} | {'images/s':>9} | ratio |")
    print(f"|{'-' * 36}|{'-' * 11}|-------|")
    for name, value, ratio in rows:
        print(f"| {name:<34} | {value:9.1f} | {ratio} |")
    print()
    print("| store format | bytes/image on disk | random-read images/s (1 thread, warm cache) |")
    print("|---|---|---|")
    print(f"| npy (raw uint8) | {npy_bytes:,.0f} | {npy_read:,.0f} |")
    print(f"| jpeg (q95) | {jpg_bytes:,.0f} | {jpg_read:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
