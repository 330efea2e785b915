"""``alexnet demo``: prepare -> train -> eval on built-in generated data."""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet.commands.options import add_quiet


def run(args: argparse.Namespace) -> int:
    from alexnet.demo import run_demo

    run_demo(Path(args.workdir), quick=args.quick, seed=args.seed, threads=args.threads, progress=not args.quiet)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="prepare -> train -> eval on built-in generated data (a few minutes on 2 cores)")
    parser.add_argument("--workdir", default="demo", help="folder for the generated images, store and run (default ./demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training run (default 0)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="a smaller, shorter version (for tests)")
    add_quiet(parser)
    parser.set_defaults(func=run)
