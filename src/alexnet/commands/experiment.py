"""``alexnet experiment NAME``: the paper's claims as named, seeded, resumable experiments."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from alexnet.experiments import REGISTRY, module, run_experiment

    if args.list or not args.name:
        for name in REGISTRY:
            print(f"{name:18s} {module(name).DESCRIPTION}")
        return 0
    from alexnet.config import parse_assignment

    stores = {}
    for text in args.store or []:
        key, value = parse_assignment(text, key="store", example="cifar10-32=/data/cifar32", typed=False)
        stores[key] = Path(value)
    extra = {}
    if args.data_root:
        extra["data_root"] = Path(args.data_root)
    if args.cache:
        extra["cache"] = Path(args.cache)
    if args.keep:
        extra["keep"] = Path(args.keep)
    doc = run_experiment(args.name, budget=args.budget, out=args.out, seeds=args.seeds, params=args.param,
                         stores=stores, first_seed=args.first_seed, progress=not args.quiet, threads=args.threads,
                         workers=args.workers, **extra)
    print(f"results: {doc['out']}/results.json")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from alexnet.experiments import BUDGETS, REGISTRY

    parser = sub.add_parser("experiment", help="run one of the paper's experiments (Figure 1, LRN, ablations, ...)",
                            description="Named, seeded, resumable experiments; rerunning skips finished sub-runs "
                                        "and resumes interrupted ones. Writes results.json, results.md and a PNG.")
    parser.add_argument("name", nargs="?", help=f"one of: {', '.join(REGISTRY)}")
    parser.add_argument("--budget", default="quick", choices=BUDGETS, help="quick (minutes on a CPU) or full")
    parser.add_argument("--out", help="run directory (default runs/experiments/NAME-BUDGET)")
    parser.add_argument("--seeds", type=int, help="number of seeds (0..N-1; default: the experiment's for the budget)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="first seed (default 0): --first-seed 2 --seeds 1 runs seed 2 alone, to add to a run "
                             "made elsewhere with tools/merge_results.py (experiments that sweep a rate do so on "
                             "their first seed)")
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="override one budget parameter, e.g. --param max_steps=500 (repeatable)")
    parser.add_argument("--data-root", help="folder holding cifar10/ and imagenette-224/ (default ../shared/data)")
    parser.add_argument("--cache", help="where prepared stores are cached (default ~/.cache/alexnet/stores)")
    parser.add_argument("--store", action="append", metavar="DATASET=STORE",
                        help="use an existing store for a dataset (cifar10-32, fashion-mnist-32, imagenette-256)")
    parser.add_argument("--keep", metavar="FOLDER",
                        help="also keep each finished sub-run's result in FOLDER and reuse those found there, so a "
                             "long experiment (relu-tanh) continues on another machine or in another --out")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--workers", type=int, default=0, help="data loader workers for the paper's network")
    parser.add_argument("--list", action="store_true", help="list the experiments")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)
