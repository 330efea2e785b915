"""``alexnet predict RUN IMAGE...``: the five most probable labels of image files (§6.1, Figure 4 left)."""

from __future__ import annotations

import argparse

from alexnet.commands.options import add_data, add_device, add_patches, add_run


def run(args: argparse.Namespace) -> int:
    from alexnet.inference.predict import predict

    return predict(args.run, args.images, patches=args.patches, labels_file=args.labels,
                   training_store=args.training_store, device=args.device, as_json=args.json, figure=args.figure,
                   max_pixels=args.max_image_pixels)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="top-5 labels of image files, as text, JSON or a Figure 4 panel")
    add_run(parser, "the trained run to predict with")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format prepare reads)")
    add_patches(parser)
    parser.add_argument("--labels", metavar="FILE",
                        help="correct labels: lines 'IMAGE LABEL' (wnid, name or index); default: the parent "
                             "folder's name when it is a wnid of the run")
    add_data(parser, "the training store, for its mean image if the run no longer records one",
             dest="training_store")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--figure", metavar="PNG", help="also draw the images and their top-5 bars (Figure 4, left)")
    parser.add_argument("--max-image-pixels", type=int, default=None, metavar="N",
                        help="refuse larger images as decompression bombs (default PIL's 89,478,485; 0: no limit)")
    add_device(parser)
    parser.set_defaults(func=run)
