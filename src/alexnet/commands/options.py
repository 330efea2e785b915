"""Options and messages several subcommands share, so that they read and behave the same everywhere."""

from __future__ import annotations

import argparse

from alexnet.config import presets


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars (results are still printed)."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``: where the network runs; ``auto`` picks LOCAL_RANK's GPU, else the CPU."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto: LOCAL_RANK's GPU)")


def add_recipe(parser: argparse.ArgumentParser) -> None:
    """``--preset`` and repeatable ``--set SECTION.KEY=VALUE``: the training recipe and its overrides."""
    parser.add_argument("--preset", default="paper", help=f"built-in config: {', '.join(presets())} (default paper)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override one config key, e.g. --set optim.lr=0.02 (repeatable)")


def training_outcome(state, run_dir: str) -> str:
    """One line saying how a training call ended: finished (and why) or paused (and how to go on)."""
    if state.done:
        return (f"finished after epoch {state.epoch} ({state.stop_reason}); best validation top-1 error "
                f"{state.best_top1:.4f}")
    return (f"paused at step {state.step} (epoch {state.epoch + 1}, batch {state.batch}); "
            f"continue with `alexnet train --resume {run_dir}`")
