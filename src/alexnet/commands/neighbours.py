"""``alexnet neighbours``: the training images nearest to query images in fc7 space (§6.1, Figure 4 right)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from alexnet.probes.neighbours import precision_at_k, render_grid, search_features

    result = search_features(args.features, args.queries, args.k, engine=args.engine,
                             faiss_threshold=args.faiss_threshold, exclude_self=args.exclude_self,
                             max_queries=args.max_queries)
    for line in result.skipped:
        print(f"skipped {line}", file=sys.stderr)
    n = len(result.query_rows)
    d = result.to_dict()
    db_labels, q_labels = result.database.labels, result.queries.labels[result.query_rows]
    labelled = q_labels >= 0
    line = f"{n} queries, k = {args.k}, engine {result.neighbours.engine}, {n / max(result.seconds, 1e-9):,.0f} queries/s"
    if labelled.any():
        p = precision_at_k(db_labels[result.neighbours.indices[labelled]], q_labels[labelled])
        d["precision_at_k"] = p
        line += f"; precision@{args.k} (same class) {100 * p:.1f}%"
    print(line)
    for item in d["results"][: args.show]:
        print(f"query {item['query']} ({item['query_path']}): " +
              ", ".join(f"{i} ({dist:.4g})" for i, dist in zip(item["neighbours"], item["squared_distances"])))
    out = Path(args.out) if args.out else Path(args.features) / "neighbours.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(d, indent=2))
    print(f"saved {out}")
    if args.grid:
        render_grid(result, args.grid, rows=args.grid_rows)
        print(f"saved {args.grid}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from alexnet.probes.neighbours import ENGINES, FAISS_THRESHOLD
    from alexnet.paper import RETRIEVAL

    p = sub.add_parser("neighbours", help="nearest training images in fc7 feature space (§6.1, Figure 4 right)")
    p.add_argument("features", help="feature folder of the database (e.g. the training set), from `alexnet features`")
    p.add_argument("--queries", required=True,
                   help="a feature folder (e.g. the validation set) or database image indices: 0,5,10-12 or a file")
    p.add_argument("-k", type=int, default=RETRIEVAL.figure4_neighbours,
                   help=f"neighbours per query (default {RETRIEVAL.figure4_neighbours}, Figure 4)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="numpy (exact, chunked) or faiss (IndexFlatL2, chunked); auto: faiss from --faiss-threshold rows")
    p.add_argument("--faiss-threshold", type=int, default=FAISS_THRESHOLD)
    p.add_argument("--exclude-self", action="store_true", help="with index queries: leave the query image out")
    p.add_argument("--max-queries", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON of every query's neighbours (default FEATURES/neighbours.json)")
    p.add_argument("--grid", default=None, help="PNG of Figure 4 (right): queries in the first column")
    p.add_argument("--grid-rows", type=int, default=RETRIEVAL.figure4_queries)
    p.add_argument("--show", type=int, default=5, help="queries to print")
    p.set_defaults(func=run)
