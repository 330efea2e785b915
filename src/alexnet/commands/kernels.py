"""``alexnet kernels RUN --out PNG``: conv1's kernels as a grid (Figure 3) and each column's colour
specificity (§6.1)."""

from __future__ import annotations

import argparse

from alexnet.commands.options import add_run


def run(args: argparse.Namespace) -> int:
    from alexnet.probes.kernels import analyse_checkpoint

    s = analyse_checkpoint(args.run, args.out, scale=args.scale, per_row=args.per_row)
    for c in s["per_column"]:
        print(f"column {c['column']} (kernels {c['kernels'][0]}-{c['kernels'][1] - 1}): "
              f"colour energy {c['colour_energy']:.3f}, channel spread {c['channel_spread']:.3f}")
    if "more_colour_specific_column" in s:
        print(f"more colour-specific: column {s['more_colour_specific_column']} "
              f"(colour-energy ratio {s['colour_energy_ratio']:.2f}; {s['colour_energy_split_p']:.0%} of random "
              f"equal splits of the same kernels are as far apart; the paper: column 2, §6.1)")
    print(f"saved {args.out} and {s['image'].rsplit('.', 1)[0]}.json")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kernels", help="conv1 kernel grid (Figure 3) and per-column colour specificity")
    add_run(p)
    p.add_argument("--out", required=True, help="PNG to write (the numbers go beside it as .json)")
    p.add_argument("--scale", type=int, default=4, help="pixels per kernel weight in the PNG (default 4)")
    p.add_argument("--per-row", type=int, default=None, help="kernels per row in each column's block (default 16)")
    p.set_defaults(func=run)
