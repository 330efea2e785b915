"""``alexnet features RUN --data STORE --out DIR``: fc7 activity of every image of a split (§6.1),
memory-mapped and resumable."""

from __future__ import annotations

import argparse

from alexnet.commands.options import add_batch_size, add_data, add_device, add_quiet, add_run, add_split


def run(args: argparse.Namespace) -> int:
    from alexnet.probes.features import extract_features

    fs = extract_features(args.run, args.data, args.out, split=args.split, batch_size=args.batch_size,
                          limit=args.limit, device=args.device, progress=not args.quiet)
    m = fs.meta
    print(f"{len(fs)} x {fs.dim} {m['layer']} features of {m['split']} of {m['store']} "
          f"(checkpoint sha256 {m['checkpoint_sha256'][:12]}) in {fs.path}/features.npy")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="last hidden layer (fc7) features of every image, for retrieval (§6.1)")
    add_run(p)
    add_data(p, "the store whose images to describe", required=True)
    add_split(p, "train, else val, else test")
    p.add_argument("--out", required=True, help="folder for features.npy, labels, paths and features.json; "
                                                "rerun with the same folder to resume")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the split")
    add_batch_size(p, 128)
    add_device(p)
    add_quiet(p)
    p.set_defaults(func=run)
