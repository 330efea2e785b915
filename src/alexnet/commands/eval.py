"""``alexnet eval RUN --data STORE``: centre-patch and ten-patch errors (§4.1, Table 2) of a trained run.

Works under ``torchrun --nproc-per-node N alexnet eval ...``: each process
evaluates its share of the images and every image is counted once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet.commands.options import (add_batch_size, add_data, add_device, add_patches, add_quiet, add_run,
                                      add_split, patch_modes)


def default_out(run: str) -> Path:
    """RUN/eval for a run directory or a checkpoint in RUN/checkpoints/; else beside the checkpoint file."""
    src = Path(run)
    if src.is_dir():
        return src / "eval"
    if src.parent.name == "checkpoints":
        return src.parent.parent / "eval"
    return src.parent / f"{src.stem}-eval"


def run(args: argparse.Namespace) -> int:
    from alexnet.inference.evaluate import evaluate_checkpoint
    from alexnet.runtime import device_kind, distributed

    out = Path(args.out) if args.out is not None else default_out(args.run)
    result = evaluate_checkpoint(args.run, args.data, split=args.split, out=out, modes=patch_modes(args.patches),
                                 batch_size=args.batch_size, device=args.device, progress=not args.quiet)
    ctx = distributed(device_kind(args.device))
    if ctx.main:
        print(result.table())
        if result.published:  # imported weights: what their publisher measured
            p = result.published
            print(f"published for these weights: {100 - p['top1']:.1f}% / {100 - p['top5']:.1f}% top-1 / top-5 "
                  f"error ({p['protocol']}; {p['source']})")
        if args.per_class:
            print()
            print(result.per_class_table())
        print(f"saved to {out}/: eval.json, eval.md, probs_*.npy, labels.npy, predictions.tsv")
    if ctx.owns_group or ctx.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="top-1/top-5 error with the centre patch and ten patches (§4.1, Table 2)")
    add_run(parser, "the trained run to evaluate")
    add_data(parser, "the store to evaluate on (a store written by `alexnet prepare`)", required=True)
    add_split(parser)
    add_patches(parser, both=True)
    parser.add_argument("--out", default=None,
                        help="folder for eval.json, eval.md, probs_*.npy, labels.npy (default RUN/eval)")
    add_batch_size(parser)
    add_device(parser)
    parser.add_argument("--per-class", action="store_true", help="also print the per-class error table")
    add_quiet(parser)
    parser.set_defaults(func=run)
