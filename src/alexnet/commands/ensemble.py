"""``alexnet ensemble``: average the predictions of several CNNs (§6) and compare with each member."""

from __future__ import annotations

import argparse

from alexnet.commands.options import add_batch_size, add_data, add_device, add_patches, add_quiet, add_split


def run(args: argparse.Namespace) -> int:
    from alexnet.inference.ensemble import ensemble

    result = ensemble(args.members, patches=args.patches, data=args.data, split=args.split, labels=args.labels,
                      out=args.out, batch_size=args.batch_size, device=args.device, progress=not args.quiet)
    print(result.table())
    print(f"saved to {args.out}/: ensemble.json, ensemble.md, probs_ensemble.npy, labels.npy")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ensemble", help="average the predictions of several CNNs (§6, Table 2)")
    parser.add_argument("members", nargs="+", metavar="MEMBER",
                        help="an eval output folder, a probs .npy file, or a trained RUN (run directory or checkpoint)")
    add_data(parser, "store to evaluate the members that are trained runs on")
    add_split(parser)
    add_patches(parser)
    parser.add_argument("--labels", help="labels .npy when no member has labels.npy beside it")
    parser.add_argument("--out", default="ensemble", help="output folder (default ./ensemble)")
    add_batch_size(parser)
    add_device(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)
