"""``alexnet eval``: centre-patch and ten-patch errors (§4.1, Table 2) of a run or checkpoint.

Works under ``torchrun --nproc-per-node N alexnet eval ...``: each process
evaluates its share of the images and every image is counted once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet.commands.options import add_device, add_quiet


def default_out(source: str) -> Path:
    """RUN/eval for a run directory; RUN/eval for RUN/checkpoints/X.pt; else beside the file."""
    src = Path(source)
    if src.is_dir():
        return src / "eval"
    if src.parent.name == "checkpoints":
        return src.parent.parent / "eval"
    return src.parent / f"{src.stem}-eval"


def run(args: argparse.Namespace) -> int:
    from alexnet.inference.evaluate import evaluate_checkpoint
    from alexnet.runtime import distributed

    modes = ("centre", "ten") if args.patches == "both" else (args.patches,)
    out = Path(args.out) if args.out is not None else default_out(args.source)
    result = evaluate_checkpoint(args.source, args.data, split=args.split, out=out, modes=modes,
                                 batch_size=args.batch_size, device=args.device, progress=not args.quiet)
    if distributed().main:
        print(result.table())
        if args.per_class:
            print()
            print(result.per_class_table())
        print(f"saved to {out}/: eval.json, eval.md, probs_*.npy, labels.npy, predictions.tsv")
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="top-1/top-5 error with the centre patch and ten patches (§4.1, Table 2)")
    parser.add_argument("source", help="a run directory or a checkpoint file")
    parser.add_argument("data", help="a store written by `alexnet prepare`")
    parser.add_argument("--split", default=None, help="split to evaluate (default: val, else test)")
    parser.add_argument("--patches", choices=("centre", "ten", "both"), default="both")
    parser.add_argument("--out", default=None,
                        help="folder for eval.json, eval.md, probs_*.npy, labels.npy (default RUN/eval)")
    parser.add_argument("--batch-size", type=int, default=64)
    add_device(parser)
    parser.add_argument("--per-class", action="store_true", help="also print the per-class error table")
    add_quiet(parser)
    parser.set_defaults(func=run)
