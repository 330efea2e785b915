"""``alexnet finetune RUN --data STORE --out NEW_RUN``: pre-train then fine-tune (§6): new output layer,
optionally a sixth conv layer."""

from __future__ import annotations

import argparse

from alexnet.commands.options import add_data, add_quiet, add_recipe, add_run, training_outcome


def run(args: argparse.Namespace) -> int:
    from alexnet.training.finetune import prepare_finetune

    trainer = prepare_finetune(args.run, args.data, args.out, preset=args.preset, overrides=args.set,
                               add_conv6=args.add_conv6, progress=not args.quiet)
    info = trainer.finetune_info
    print(f"copied {', '.join(info['copied_layers'])} from {info['source']}; "
          f"new (§5 initialisation): {', '.join(info['new_layers'])}")
    state = trainer.fit()
    print(training_outcome(state, args.out))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("finetune", help="fine-tune a trained run on another class set (§6)")
    add_run(parser, "the run trained on the source classes")
    add_data(parser, "store of the new classes", required=True)
    parser.add_argument("--out", required=True, help="run directory to create")
    parser.add_argument("--add-conv6", action="store_true",
                        help="add the sixth conv layer over the last pooling layer (§6), freshly initialised")
    add_recipe(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)
