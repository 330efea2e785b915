"""``alexnet import torchvision|onnx FILE --out RUN``: published ImageNet weights as a run (docs/weights.md)."""

from __future__ import annotations

import argparse

FORMATS = ("torchvision", "onnx")  # alexnet.weights.FORMATS (this module imports no torch)


def run(args: argparse.Namespace) -> int:
    from alexnet.inference.trained import TrainedRun
    from alexnet.weights import import_weights

    out = import_weights(args.format, args.file, args.out)
    trained = TrainedRun.open(out, device="cpu")
    source = trained.source or {}
    spec = trained.spec
    print(f"{out}: {source.get('weights')} from {source.get('file')} (sha256 {source.get('sha256', '')[:16]}...)")
    print(f"  arch {spec.arch}, input {spec.input_size}x{spec.input_size}, {spec.num_classes} classes, "
          f"images decoded at {trained.image_size}; inputs: {trained.preprocessing}")
    if source.get("sha256_matches_published") is False:
        print(f"  note: the file's sha256 does not start as the name {source.get('published_file')} says: "
              f"it is not byte for byte the published download")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("import", help="published ImageNet weights (torchvision, BVLC ONNX) as a run")
    parser.add_argument("format", choices=FORMATS,
                        help="torchvision: the IMAGENET1K_V1 state dict (alexnet-owt-7be5be79.pth); "
                             "onnx: BVLC AlexNet from the ONNX model zoo (bvlcalexnet-12.onnx)")
    parser.add_argument("file", metavar="FILE", help="the weights file")
    parser.add_argument("--out", required=True, metavar="RUN", help="run directory to create")
    parser.set_defaults(func=run)
