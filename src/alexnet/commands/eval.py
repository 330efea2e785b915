"""``alexnet eval``: centre-patch and ten-patch errors (§4.1, Table 2) of a run or checkpoint."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from alexnet.evaluate import evaluate_checkpoint

    modes = ("centre", "ten") if args.patches == "both" else (args.patches,)
    out = args.out
    if out is None:
        from pathlib import Path

        src = Path(args.source)
        out = (src if src.is_dir() else src.parent.parent) / "eval"
    result = evaluate_checkpoint(args.source, args.data, split=args.split, out=out, modes=modes,
                                 batch_size=args.batch_size, device=args.device, progress=not args.quiet)
    print(result.table())
    print(f"saved to {out}/eval.json, eval.md and probs_*.npy")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="top-1/top-5 error with the centre patch and ten patches (§4.1)")
    parser.add_argument("source", help="a run directory or a checkpoint file")
    parser.add_argument("data", help="a store written by `alexnet prepare`")
    parser.add_argument("--split", default=None, help="split to evaluate (default: val, else test)")
    parser.add_argument("--patches", choices=("centre", "ten", "both"), default="both")
    parser.add_argument("--out", default=None, help="folder for eval.json, eval.md, probs_*.npy (default RUN/eval)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=run)
