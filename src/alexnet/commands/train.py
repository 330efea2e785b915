"""``alexnet train``: the paper's recipe on a prepared store; ``--resume RUN`` continues a run.

On ``--resume``, ``--set`` may change only the keys of :data:`alexnet.training.resume.RESUMABLE`
(the learning rate, the epoch and step budgets, the schedule's patience, logging, workers...);
each change is applied and logged, any other key is refused with one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet.commands.options import add_quiet, add_recipe, training_outcome
from alexnet.config import load_config
from alexnet.errors import UserError


def run(args: argparse.Namespace) -> int:
    from alexnet.training.rundir import load_run_config
    from alexnet.training.trainer import train

    overrides = list(args.set or [])
    if args.verify_data:
        overrides.append('data.verify="checksums"')
    if args.resume:
        if args.data or args.config or args.preset != "paper":
            raise UserError("--resume takes its configuration from the run; change it with --set only")
        run_dir = Path(args.resume)
        config = load_run_config(run_dir, overrides)
        state = train(config, run_dir, resume=True, progress=not args.quiet)
    else:
        if args.data:
            overrides.insert(0, f"data.store={_toml_string(args.data)}")
        config = load_config(args.preset, overrides, file=args.config)
        if args.out is None:
            raise UserError("--out RUN is required: the run directory to create")
        state = train(config, Path(args.out), progress=not args.quiet)
    print(training_outcome(state, args.resume or args.out))
    return 0


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a network with the paper's recipe (§4, §5)")
    data = parser.add_argument("--data", metavar="STORE", help="a store written by `alexnet prepare` (sets data.store)")
    data.config_key = "data.store"  # errors about data.store name --data (alexnet.cli.flag_for)
    parser.add_argument("--out", help="run directory to create")
    add_recipe(parser)
    parser.add_argument("--config", help="a TOML config file instead of a preset")
    parser.add_argument("--resume", metavar="RUN",
                        help="continue the run in RUN from its last checkpoint; --set may then change only the "
                             "learning rate, budgets, schedule patience, logging and workers")
    parser.add_argument("--verify-data", action="store_true",
                        help="check every checksum of the splits read before training (sets data.verify; by "
                             "default only stores up to 2 GiB are checked in full)")
    add_quiet(parser)
    parser.set_defaults(func=run)
