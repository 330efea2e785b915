"""``alexnet report``: one self-contained HTML page for a run (curves, errors, kernels, predictions, neighbours)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from alexnet.probes.report import write_report

    path = write_report(args.run, args.out, store=args.data, compute_eval=not args.no_eval, pool=args.pool)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB, images embedded)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="self-contained HTML report of a run")
    p.add_argument("run", help="a run directory written by `alexnet train`")
    p.add_argument("--out", default=None, help="HTML file to write (default RUN/report.html)")
    p.add_argument("--data", default=None, help="store to read images from (default: the run's data.store)")
    p.add_argument("--no-eval", action="store_true",
                   help="do not compute the error table when RUN/eval/eval.json is missing")
    p.add_argument("--pool", type=int, default=2000,
                   help="training images searched for the neighbour section (default 2000)")
    p.set_defaults(func=run)
