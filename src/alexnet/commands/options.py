"""The command line's one vocabulary, shared by every subcommand.

* ``RUN`` -- a trained run: a run directory or a checkpoint file, always the first positional;
* ``--data STORE`` -- a store written by ``alexnet prepare``;
* ``--split``, ``--patches`` (default ``ten``, §4.1's test procedure), ``--batch-size``,
  ``--device``, ``--quiet``, ``--out``;
* ``--preset`` / ``--set SECTION.KEY=VALUE`` -- the training recipe.

Nothing here imports torch or numpy, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse

from alexnet.config import presets

#: §4.1's test procedure: the softmax averaged over ten patches.  The default of every ``--patches``.
DEFAULT_PATCHES = "ten"
PATCH_CHOICES = ("centre", "ten")


def add_run(parser: argparse.ArgumentParser, what: str = "the trained run") -> None:
    """``RUN``: a run directory or a checkpoint file (the first positional everywhere)."""
    parser.add_argument("run", metavar="RUN", help=f"{what}: a run directory or a checkpoint file")


def add_data(parser: argparse.ArgumentParser, help: str = "a store written by `alexnet prepare`", *,
             required: bool = False, dest: str = "data") -> None:
    """``--data STORE``: a store written by ``alexnet prepare``."""
    parser.add_argument("--data", metavar="STORE", required=required, dest=dest, help=help)


def add_split(parser: argparse.ArgumentParser, default_text: str = "val, else test") -> None:
    parser.add_argument("--split", default=None, help=f"split of the store (default: {default_text})")


def add_patches(parser: argparse.ArgumentParser, *, both: bool = False) -> None:
    """``--patches``: the centre patch or the ten patches of §4.1 (default ten)."""
    choices = PATCH_CHOICES + (("both",) if both else ())
    parser.add_argument("--patches", choices=choices, default=DEFAULT_PATCHES,
                        help="centre patch, or the softmax averaged over the ten patches of §4.1"
                             + (", or both" if both else "") + f" (default {DEFAULT_PATCHES})")


def add_batch_size(parser: argparse.ArgumentParser, default: int = 64) -> None:
    parser.add_argument("--batch-size", type=int, default=default, help=f"images per batch (default {default})")


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


def patch_modes(patches: str) -> tuple[str, ...]:
    """``--patches`` as the evaluation modes it asks for."""
    return PATCH_CHOICES if patches == "both" else (patches,)


def training_outcome(state, run_dir: str) -> str:
    """One line saying how a training call ended: finished (and why) or paused (and how to go on)."""
    if state.done:
        split = getattr(state, "decision_split", "") or "the split that decided"
        kind = "training" if split == "train" else "decision"
        return (f"finished after epoch {state.epoch} ({state.stop_reason}); lowest {kind} top-1 error "
                f"(on {split}) {state.best_top1:.4f}")
    return (f"paused at step {state.step} (epoch {state.epoch + 1}, batch {state.batch}); "
            f"continue with `alexnet train --resume {run_dir}`")
