"""``alexnet codes``: binary codes from an auto-encoder on fc7 features (§6.1's proposal), compared with
raw features and raw pixels: precision@k of same-class neighbours, queries/s and bytes per item."""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

from alexnet.commands.options import add_quiet


def _bits(text: str) -> tuple[int, ...]:
    from alexnet.errors import UserError

    try:
        out = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UserError(f"--bits: expected numbers like 64,128,256, got {text!r}") from None
    if not out or any(b < 8 or b % 8 for b in out):
        raise UserError(f"--bits: every code length must be a positive multiple of 8, got {text!r}")
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from alexnet.probes.codes import CodeSettings, compare_feature_sets, save_results, table

    settings = CodeSettings(bits=_bits(args.bits), epochs=args.epochs, hidden=args.hidden,
                            train_rows=args.train_rows, engine=args.engine, seed=args.seed)
    results, meta = compare_feature_sets(
        args.features, args.queries, k=args.k, settings=settings, pixels=not args.no_pixels,
        pixel_codes=args.pixel_codes, max_queries=args.max_queries,
        progress=None if args.quiet else (lambda line: print(line, flush=True)),
    )
    meta["machine"] = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    out = Path(args.out) if args.out else Path(args.features) / "codes"
    save_results(results, out, meta)
    print(table(results, args.k))
    print(f"saved {out}/retrieval.json and retrieval.md")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from alexnet.paper import CODE2012

    p = sub.add_parser("codes", help="binary auto-encoder codes vs raw features vs pixels for retrieval (§6.1)")
    p.add_argument("features", help="feature folder of the database (training set)")
    p.add_argument("--queries", required=True, help="feature folder of the queries (e.g. the test set)")
    p.add_argument("-k", type=int, default=CODE2012.neighbours_k,
                   help=f"neighbours per query for precision@k (default {CODE2012.neighbours_k}, findsimilar.py)")
    p.add_argument("--bits", default="64,128,256", help="code lengths (default 64,128,256)")
    p.add_argument("--no-pixels", action="store_true", help="leave out the raw-pixel baseline")
    p.add_argument("--pixel-codes", action="store_true", help="also an auto-encoder on raw pixels (§6.1, [14])")
    p.add_argument("--max-queries", type=int, default=None)
    p.add_argument("--epochs", type=int, default=10, help="auto-encoder epochs (default 10)")
    p.add_argument("--hidden", type=int, default=512, help="auto-encoder hidden units (default 512)")
    p.add_argument("--train-rows", type=int, default=None, help="train the auto-encoder on a random subset")
    p.add_argument("--engine", default="auto", choices=("auto", "numpy", "faiss"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for retrieval.json/.md (default FEATURES/codes)")
    add_quiet(p)
    p.set_defaults(func=run)
