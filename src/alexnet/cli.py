"""The ``alexnet`` command line: parses arguments and calls library code.

Every subcommand module exposes ``register(subparsers)`` and the function it
registers as ``func``; a :class:`~alexnet.errors.UserError` (and, as a last resort,
an ``OSError`` such as a full disk) becomes one line on stderr and exit status 2, never
a traceback; Ctrl-C is exit status 130.  Library errors name the parameter
they are about (``err.key``); here it becomes the flag the user typed
(``batch_size`` -> ``--batch-size``, ``optim.lr`` -> ``--set optim.lr``).

Building the parser imports no torch and no numpy: ``alexnet --help`` and every
``alexnet COMMAND --help`` answer at once; the work's imports happen in ``func``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from typing import Sequence

from alexnet import __version__
from alexnet.errors import UserError

#: Subcommand modules, each with ``register(subparsers)``, in the order of the pipeline.
COMMAND_MODULES: tuple[str, ...] = (
    "alexnet.commands.demo",
    "alexnet.commands.prepare",
    "alexnet.commands.summary",
    "alexnet.commands.train",
    "alexnet.commands.import_weights",
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


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="Krizhevsky, Sutskever & Hinton (NIPS 2012) on PyTorch: prepare, train, evaluate, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser, sub


def flag_for(parser: argparse.ArgumentParser, key: str) -> str:
    """The command-line spelling of parameter ``key`` in ``parser``: its long option, its metavar, or
    ``--set KEY`` for a config key (``section.key``); the key itself when the command has no such option."""
    dest = key.replace("-", "_")
    for action in parser._actions:
        if action.dest == dest or getattr(action, "config_key", None) == key:
            if action.option_strings:
                return max(action.option_strings, key=len)
            return str(action.metavar or action.dest.upper())
    if "." in key:
        return f"--set {key}"
    return key


def main(argv: Sequence[str] | None = None) -> int:
    parser, sub = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        message = f"{flag_for(sub.choices[args.command], err.key)}: {err.message}" if err.key else str(err)
        print(f"alexnet {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexnet {args.command}: interrupted; everything written so far is kept", file=sys.stderr)
        return 130
    except OSError as err:  # the machine, not the program: a full disk, a file that cannot be written
        why = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        where = f"{err.filename}: " if err.filename else ""
        print(f"alexnet {args.command}: error: {where}{why}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
