"""``alexnet summary``: print the layer table of a network spec."""

from __future__ import annotations

import argparse

from alexnet.commands.options import add_data

from alexnet.net.variants import ARCHS, PAPER_ARCH, VARIANTS, parse_variants
from alexnet.paper import ARCH, READINGS


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that describe a network, shared by every command that builds one."""
    parser.add_argument("--arch", default=PAPER_ARCH,
                        help="architecture: " + "; ".join(f"{k} ({v})" for k, v in ARCHS.items())
                        + f" (default {PAPER_ARCH})")
    parser.add_argument("--reading", default="paper", help=f"paper reading: {', '.join(READINGS)} (default paper)")
    parser.add_argument(
        "--variant", default="", help="comma-separated variants: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--num-classes", type=int, default=ARCH.num_classes)
    parser.add_argument("--input-size", type=int, default=ARCH.input_size)
    parser.add_argument("--width", type=float, default=1.0, help="multiplier on every conv layer's kernels")
    parser.add_argument("--fc-units", type=int, default=ARCH.fc_units)
    parser.add_argument("--init", default="paper", help="initialisation: paper (§5), fan-in, he, he-bias, he-scaled "
                        "(default paper)")


def spec_from_args(args: argparse.Namespace):
    from alexnet.net.model import ModelSpec

    return ModelSpec(
        num_classes=args.num_classes,
        reading=args.reading,
        variants=parse_variants(args.variant),
        input_size=args.input_size,
        width=args.width,
        fc_units=args.fc_units,
        arch=args.arch,
        init=args.init,
    )


def run(args: argparse.Namespace) -> int:
    from alexnet.net.model import build_model
    from alexnet.net.summary import format_table, layer_table

    spec = spec_from_args(args)
    model = build_model(spec)
    print(f"AlexNet, arch={spec.arch}, reading={spec.reading}, variants={','.join(spec.variants) or 'none'}, "
          f"input {spec.input_size}x{spec.input_size}, {spec.num_classes} classes")
    print(format_table(layer_table(model)))
    if args.data:
        from alexnet.data.store import Store
        from alexnet.net.propagation import signal_on_store

        if args.num_classes != Store(args.data).num_classes:
            spec = spec_from_args(argparse.Namespace(**{**vars(args), "num_classes": Store(args.data).num_classes}))
        report = signal_on_store(spec, args.data)
        print(f"\nAt initialisation ({spec.init}), one training batch of {args.data}: activity, how much of it "
              f"depends on the image (signal), dead units, and each layer's gradient relative to its weights")
        print(report.table())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("summary", help="print the layer table (shapes, parameters, FLOPs)")
    add_model_arguments(parser)
    add_data(parser, "also measure how signal and gradients propagate at initialisation on one training batch "
                     "of this store (alexnet.net.propagation)")
    parser.set_defaults(func=run)
