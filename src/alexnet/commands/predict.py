"""``alexnet predict``: the five most probable labels of image files (§6.1, Figure 4 left)."""

from __future__ import annotations

import argparse

from alexnet.commands.options import add_device
from alexnet.errors import UserError


def run(args: argparse.Namespace) -> int:
    from alexnet.inference.predict import predict

    if args.checkpoint is None:
        raise UserError("--checkpoint RUN is required: the run directory or checkpoint file to predict with")
    return predict(args.checkpoint, args.images, patches=args.patches, labels_file=args.labels, store=args.store,
                   device=args.device, as_json=args.json, figure=args.figure)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="top-5 labels of image files, as text, JSON or a Figure 4 panel")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format prepare reads)")
    parser.add_argument("--checkpoint", metavar="RUN", help="a run directory or a checkpoint file")
    parser.add_argument("--patches", choices=("centre", "ten"), default="centre",
                        help="centre patch, or the softmax averaged over the ten patches of §4.1")
    parser.add_argument("--labels", metavar="FILE",
                        help="correct labels: lines 'IMAGE LABEL' (wnid, name or index); default: the parent "
                             "folder's name when it is a wnid of the checkpoint")
    parser.add_argument("--store", help="training store for the mean image, if the checkpoint's is gone")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--figure", metavar="PNG", help="also draw the images and their top-5 bars (Figure 4, left)")
    add_device(parser)
    parser.set_defaults(func=run)
