"""``alexnet train``: the paper's recipe on a prepared store; ``--resume RUN`` continues a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet.config import load_config, presets
from alexnet.errors import UserError


def run(args: argparse.Namespace) -> int:
    from alexnet.train import load_run_config, train

    overrides = list(args.set or [])
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
    if state.done:
        print(f"finished after epoch {state.epoch} ({state.stop_reason}); best validation top-1 error "
              f"{state.best_top1:.4f}")
    else:
        print(f"paused at step {state.step} (epoch {state.epoch + 1}, batch {state.batch}); "
              f"continue with `alexnet train --resume {args.resume or args.out}`")
    return 0


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a network with the paper's recipe (§4, §5)")
    parser.add_argument("--data", help="a store written by `alexnet prepare` (sets data.store)")
    parser.add_argument("--out", help="run directory to create")
    parser.add_argument("--preset", default="paper", help=f"built-in config: {', '.join(presets())} (default paper)")
    parser.add_argument("--config", help="a TOML config file instead of a preset")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override one config key, e.g. --set optim.lr=0.02 (repeatable)")
    parser.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
