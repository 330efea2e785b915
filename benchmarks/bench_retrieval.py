"""Retrieval quality, speed and memory side by side (§6.1): raw fc7 features, binary codes, raw pixels.

For a trained checkpoint and a labelled store it extracts (or resumes) fc7
features of the database split (training images) and the query split (test or
val images), then reports for each method precision@k of same-class neighbours,
queries/s of the search (query encoding excluded, reported apart) and bytes per
database item:

  features, exact L2          -- §6.1's Euclidean distance over the last hidden layer (numpy engine)
  features, exact L2 (faiss)  -- the same with faiss IndexFlatL2, if faiss-cpu is installed
  features, B-bit codes       -- auto-encoder codes of the features, Hamming distance (§6.1's proposal)
  pixels, exact L2            -- the centre patch the network sees, as a vector
  pixels, B-bit codes         -- auto-encoder codes of raw pixels (the [14] baseline §6.1 contrasts)

    python benchmarks/bench_retrieval.py RUN STORE --work DIR [--db-split train] [--query-split test]
        [--db-limit N] [--queries N] [-k 16] [--bits 64,128,256] [--epochs 10] [--train-rows N]

Results go to DIR/retrieval.json and DIR/retrieval.md as well as stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from alexnet.probes.codes import CodeSettings, MethodResult, compare_feature_sets, save_results, table
from alexnet.probes.features import FeatureSet, extract_features
from alexnet.probes.neighbours import faiss_available, knn, precision_at_k
from alexnet.paper import CODE2012


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("store")
    ap.add_argument("--work", required=True, help="folder for feature sets and results (resumable)")
    ap.add_argument("--db-split", default="train")
    ap.add_argument("--query-split", default="test")
    ap.add_argument("--db-limit", type=int, default=None, help="first N database images")
    ap.add_argument("--queries", type=int, default=1000, help="a seeded random sample of N query images")
    ap.add_argument("--train-rows", type=int, default=None, help="train each auto-encoder on N random items")
    ap.add_argument("-k", type=int, default=CODE2012.neighbours_k)
    ap.add_argument("--bits", default="64,128,256")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--no-pixel-codes", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    t0 = time.perf_counter()
    db = extract_features(args.checkpoint, args.store, work / f"features-{args.db_split}", split=args.db_split,
                          limit=args.db_limit, progress=True)
    qs = extract_features(args.checkpoint, args.store, work / f"features-{args.query_split}",
                          split=args.query_split, progress=True)
    print(f"features: {len(db)} database, {len(qs)} queries, {db.dim}-d ({time.perf_counter() - t0:.0f} s)")
    bits = tuple(int(b) for b in args.bits.split(","))
    settings = CodeSettings(bits=bits, epochs=args.epochs, train_rows=args.train_rows, engine="numpy")
    results, meta = compare_feature_sets(db.path, qs.path, k=args.k, settings=settings, pixels=True,
                                         pixel_codes=not args.no_pixel_codes, max_queries=args.queries,
                                         progress=lambda line: print(line, flush=True))
    if faiss_available():
        fdb, fqs = FeatureSet.open(db.path), FeatureSet.open(qs.path)
        rows = np.sort(np.random.default_rng(0).choice(len(fqs), min(args.queries, len(fqs)), replace=False))
        q = np.asarray(fqs.features[rows])
        t = time.perf_counter()
        nb = knn(fdb.features, q, args.k, engine="faiss")
        secs = time.perf_counter() - t
        results.insert(1, MethodResult(f"features, exact L2 ({fdb.dim}-d float32, faiss)",
                                       precision_at_k(fdb.labels[nb.indices], fqs.labels[rows]), len(q) / secs,
                                       fdb.dim * 4))
    meta["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
                       f"torch {torch.__version__}, numpy {np.__version__}")
    save_results(results, work, meta)
    print(table(results, args.k))
    print(json.dumps({k: v for k, v in meta.items() if k != "results"}, indent=1))


if __name__ == "__main__":
    main()
