"""``alexnet ensemble``: average the predictions of several CNNs (§6) and compare with each member."""

from __future__ import annotations

import argparse

from alexnet.commands.options import add_quiet


def run(args: argparse.Namespace) -> int:
    from alexnet.inference.ensemble import ensemble

    result = ensemble(args.members, patches=args.patches, data=args.data, split=args.split, labels=args.labels,
                      out=args.out, progress=not args.quiet)
    print(result.table())
    print(f"saved to {args.out}/: ensemble.json, ensemble.md, probs_ensemble.npy, labels.npy")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ensemble", help="average the predictions of several CNNs (§6, Table 2)")
    parser.add_argument("members", nargs="+", metavar="MEMBER",
                        help="an eval output folder, a probs .npy file, a run directory or a checkpoint")
    parser.add_argument("--patches", choices=("centre", "ten"), default="ten",
                        help="which saved predictions of eval folders to use, and how to evaluate runs (default ten)")
    parser.add_argument("--data", help="store to evaluate run directories and checkpoints on")
    parser.add_argument("--split", default=None, help="split of --data (default: val, else test)")
    parser.add_argument("--labels", help="labels .npy when no member has labels.npy beside it")
    parser.add_argument("--out", default="ensemble", help="output folder (default ./ensemble)")
    add_quiet(parser)
    parser.set_defaults(func=run)
