"""``alexnet report RUN``: one self-contained HTML page for a run (curves, errors, kernels, predictions,
neighbours)."""

from __future__ import annotations

import argparse

from alexnet.commands.options import add_data, add_device, add_run


def run(args: argparse.Namespace) -> int:
    from alexnet.probes.report import write_report

    path = write_report(args.run, args.out, store=args.data, compute_eval=not args.no_eval, pool=args.pool,
                        device=args.device)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB, images embedded)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="self-contained HTML report of a run")
    add_run(p)
    p.add_argument("--out", default=None, help="HTML file to write (default RUN/report.html)")
    add_data(p, "store to read images from (default: the run's training store)")
    p.add_argument("--no-eval", action="store_true",
                   help="do not compute the error table when RUN/eval/eval.json is missing")
    p.add_argument("--pool", type=int, default=2000,
                   help="training images searched for the neighbour section (default 2000)")
    add_device(p)
    p.set_defaults(func=run)
