"""The ``alexnet`` command line: parses arguments and calls library code.

Every subcommand module exposes ``register(subparsers)`` and the function it
registers as ``func``; a :class:`~alexnet.errors.UserError` becomes one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from alexnet import __version__
from alexnet.errors import UserError

#: Subcommand modules, each with ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "alexnet.commands.prepare",
    "alexnet.commands.summary",
    "alexnet.commands.demo",
    "alexnet.commands.train",
    "alexnet.commands.eval",
    "alexnet.commands.ensemble",
    "alexnet.commands.predict",
    "alexnet.commands.finetune",
    "alexnet.commands.export",
    "alexnet.commands.features",
    "alexnet.commands.neighbours",
    "alexnet.commands.codes",
    "alexnet.commands.kernels",
    "alexnet.commands.report",
    "alexnet.commands.experiment",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="Krizhevsky, Sutskever & Hinton (NIPS 2012) on PyTorch: prepare, train, evaluate, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"alexnet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexnet {args.command}: interrupted; everything written so far is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
