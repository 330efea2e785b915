"""The built-in demo dataset: generated shapes in the ImageNet folder-per-class layout.

The data are generated, not downloaded: ten classes of simple shapes and
textures (disc, square, triangle, cross, ring, stripes in three directions,
checkerboard, dots) in random colours, sizes and positions on noisy
backgrounds, written as JPEG files in the ImageNet folder-per-class layout so
that the demo runs the real ``prepare`` path.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = (
    "disc", "square", "triangle", "cross", "ring",
    "hstripes", "vstripes", "dstripes", "checker", "dots",
)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(90, 256, 3))  # type: ignore[return-value]


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One ``size`` x ``size`` RGB image of ``shape``."""
    background = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    colour = _colour(rng)
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(r, size - r, 2)
    box = (cx - r, cy - r, cx + r, cy + r)
    period = max(3, int(rng.integers(size // 10, size // 5)))
    if shape == "disc":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "cross":
        w = r / 3
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(r / 3)))
    elif shape in ("hstripes", "vstripes", "dstripes", "checker"):
        yy, xx = np.mgrid[0:size, 0:size]
        phase = rng.integers(0, period)
        if shape == "hstripes":
            mask = ((yy + phase) // (period / 2)) % 2 == 0
        elif shape == "vstripes":
            mask = ((xx + phase) // (period / 2)) % 2 == 0
        elif shape == "dstripes":
            mask = ((xx + yy + phase) // (period / 2 * math.sqrt(2))) % 2 == 0
        else:
            mask = (((xx + phase) // period) + ((yy + phase) // period)) % 2 == 0
        pixels = np.asarray(image).copy()
        pixels[mask] = colour
        image = Image.fromarray(pixels, "RGB")
    elif shape == "dots":
        for y in np.arange(period / 2, size, period):
            for x in np.arange(period / 2, size, period):
                d = period / 4
                draw.ellipse((x - d, y - d, x + d, y + d), fill=colour)
    else:
        raise ValueError(f"unknown shape {shape}")
    return image


def write_demo_tree(root: Path, *, train_per_class: int = 300, val_per_class: int = 60, size: int = 40,
                    seed: int = 0) -> Path:
    """Write ``root/train/<shape>/*.JPEG`` and ``root/val/<shape>/*.JPEG``; returns ``root``.

    Skips writing if a finished tree is already there (a ``.complete`` marker).
    """
    marker = root / ".complete"
    if marker.is_file():
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for shape in SHAPES:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw_shape(shape, size, rng).save(folder / f"{shape}_{i:04d}.JPEG", quality=90)
    marker.write_text("ok\n")
    return root
