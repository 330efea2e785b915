"""``alexnet export RUN --out FILE``: ONNX or TorchScript, checked against PyTorch on a random batch."""

from __future__ import annotations

import argparse

from alexnet.commands.options import add_run


def run(args: argparse.Namespace) -> int:
    from alexnet.inference.export import export

    report = export(args.run, args.out, fmt=args.format, batch_size=args.batch_size)
    print(report.summary())
    print(f"sidecar: {args.out}.json (input size, preprocessing, classes)")
    return 0 if report.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export to ONNX or TorchScript and check it against PyTorch")
    add_run(parser, "the trained run to export")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument("--out", required=True, help="file to write, e.g. model.onnx")
    parser.add_argument("--batch-size", type=int, default=4, help="random batch for the check (default 4)")
    parser.set_defaults(func=run)
