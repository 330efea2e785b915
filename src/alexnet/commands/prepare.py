"""``alexnet prepare SRC OUT``: decode, rescale and store an image tree (§2); ``--verify`` checks a store."""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet.commands.options import add_quiet
from alexnet.errors import UserError
from alexnet.paper import DATA

#: The store's defaults, restated here so that ``alexnet prepare --help`` needs no numpy (a test pins them
#: to :mod:`alexnet.data.store`).
FORMATS = ("npy", "jpeg")
DEFAULT_SHARD_SIZE = 512
DEFAULT_JPEG_QUALITY = 95
DEFAULT_MAX_PIXELS = 89_478_485


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` sub-command."""
    p = subparsers.add_parser(
        "prepare",
        help="turn an ImageNet-format image tree into the store training reads",
        description="Decode, rescale (shorter side to --size), centre-crop and store every image of SRC in OUT "
        "(§2); resumable; `--verify OUT` checks a store.",
    )
    p.add_argument("src", nargs="?", type=Path, help="source tree: SRC/train/<class>/* (+ val/, test/) or SRC/<class>/*")
    p.add_argument("out", nargs="?", type=Path, help="store folder to write (created; resumed if partly written)")
    p.add_argument("--verify", metavar="OUT", type=Path, help="check a store's checksums and counts instead")
    p.add_argument("--size", type=int, default=None,
                   help=f"side of the stored square images (default {DATA.image_size}, §2; 32 with --fashion-mnist)")
    p.add_argument("--fashion-mnist", action="store_true",
                   help="SRC is a folder of Fashion-MNIST IDX files (Debian's dataset-fashion-mnist): store them "
                        "with a border of zeros up to --size, as the fashion-mnist preset expects")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--val-labels", type=Path, default=None, metavar="FILE",
                   help="labels for a flat SRC/val/: one wnid or 1-based class id per line in sorted file order, "
                        "or CSV file,wnid")
    p.add_argument("--split-half", action="store_true",
                   help="put half of each class in train and half in test (§6, Fall 2009 convention)")
    p.add_argument("--holdout", type=int, default=0, metavar="N",
                   help="move N images of every class from train to a 'holdout' split: the slice that learning-rate "
                        "drops, early stopping and the best checkpoint are decided on (default 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of --split-half and --holdout (default %(default)s)")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                   help="source images per shard (default %(default)s)")
    p.add_argument("--format", choices=FORMATS, default="npy",
                   help="npy: raw uint8 (fast reads); jpeg: re-encoded, smaller")
    p.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY,
                   help="quality of --format jpeg (default %(default)s)")
    p.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse images with more pixels as decompression bombs (default %(default)s, PIL's; "
                        "0: no limit)")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``alexnet prepare`` from parsed arguments; returns the exit code."""
    if args.verify is not None:
        from alexnet.data.store import verify_store

        if args.src is not None:
            raise UserError("give either --verify OUT or SRC OUT, not both")
        problems = verify_store(args.verify)
        for p in problems:
            print(p)
        print(f"{args.verify}: {'ok' if not problems else f'{len(problems)} problems'}")
        return 0 if not problems else 1
    if args.src is None or args.out is None:
        raise UserError("alexnet prepare needs SRC and OUT (or --verify OUT)")
    if args.fashion_mnist:
        from alexnet.data.sources.fashion_mnist import prepare_fashion_mnist

        store = prepare_fashion_mnist(args.src, args.out, args.size, holdout=args.holdout, seed=args.seed)
        print(f"{args.out}: Fashion-MNIST at {store.image_size}x{store.image_size}, splits {', '.join(store.splits())}")
        return 0
    from alexnet.data.prepare import prepare

    size = DATA.image_size if args.size is None else args.size  # --size 0 stays an error, not the default
    report = prepare(args.src, args.out, size=size, workers=args.workers, val_labels=args.val_labels,
                     split_half=args.split_half, holdout=args.holdout, seed=args.seed, shard_size=args.shard_size,
                     progress=not args.quiet, fmt=args.format, quality=args.jpeg_quality,
                     max_pixels=args.max_image_pixels)
    print(report.summary())
    return 0
