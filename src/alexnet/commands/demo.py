"""``alexnet demo``: the main job on built-in data (prints the network until training lands)."""

from __future__ import annotations

import argparse

from alexnet.model import ModelSpec, build_model
from alexnet.summary import format_table, layer_table


def run(args: argparse.Namespace) -> int:
    model = build_model(ModelSpec())
    print("The paper's network (§3, Figure 2), reading 'paper':")
    print(format_table(layer_table(model)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the whole pipeline on built-in generated data")
    parser.set_defaults(func=run)
