"""Experiment ``retrieval``: §6.1's retrieval on a trained network, recorded with its command.

Nearest neighbours by the last hidden layer (fc7, :mod:`alexnet.probes.features`),
by short binary codes of it (§6.1's proposed auto-encoder, :mod:`alexnet.probes.codes`,
one per code length and seed) and by raw pixels (the baseline §6.1 contrasts):
precision@k -- the share of a query's k nearest database images that have its
class -- for each, on the database = the store's train split and queries = its
val/test split (seeded subsets in the budgets that ask for them).

The network: ``--param run=PATH`` (a train run directory or checkpoint; its store
from ``run.json``, or ``--param store=PATH``), else one trained here with the
``cifar10`` preset on CIFAR-10 (``train_epochs`` epochs at width ``width``, or
``train_steps`` steps).  Features are extracted once and cached in the run
directory (resumable); finished code models' precisions are kept in ``codes.json``.
Exact searches are deterministic given the checkpoint (one value); the seeds are
the auto-encoder's.  Writes ``record.json`` (:mod:`alexnet.experiments.record`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.errors import UserError
from alexnet.experiments import common, record, stores, subruns

DESCRIPTION = "§6.1 retrieval: precision@k of fc7 features, binary codes of them, and raw pixels"
SEEDS = {"quick": 1, "full": 3}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"run": "", "store": "", "database_images": 2000, "queries": 500, "k": 16, "bits": [64, 128],
              "code_epochs": 3, "hidden": 512, "train_steps": 40, "train_epochs": 1, "width": 0.25,
              "batch_size": 64},
    "full": {"run": "", "store": "", "database_images": 0, "queries": 0, "k": 16, "bits": [64, 128, 256],
             "code_epochs": 10, "hidden": 512, "train_steps": 0, "train_epochs": 1, "width": 0.25,
             "batch_size": 128},
}
PRESET = "cifar10"


def bits_of(values: list[Any]) -> list[int]:
    if not values or any(not isinstance(b, int) or b < 8 or b % 8 for b in values):
        raise UserError(f"bits: a list of multiples of 8 like [64, 128], got {values!r}", key="param")
    return list(values)


def run(ctx: common.Context, params: dict[str, Any]) -> dict[str, Any]:
    from alexnet.probes.features import extract_features, pixel_vectors

    seeds = ctx.seed_list(SEEDS)
    bits = bits_of(params["bits"])
    common.start(ctx, seeds)
    source, store = _network(ctx, params)
    store = _subset(ctx, store, params)
    from alexnet.data.store import Store

    s = Store(store)
    query_split = next((n for n in ("val", "test") if n in s.splits()), None)
    if query_split is None:
        raise UserError(f"store {store} has neither a val nor a test split to draw queries from")
    feats = {}
    for role, split in (("database", "train"), ("queries", query_split)):
        feats[role] = extract_features(source, store, ctx.out / f"features-{role}", split=split,
                                       batch_size=params["batch_size"], device="cpu")
    crop = int(feats["database"].meta["model_spec"]["input_size"])
    labels = {r: np.asarray(f.labels) for r, f in feats.items()}
    vectors = {"fc7": {r: np.asarray(f.features) for r, f in feats.items()},
               "pixels": {"database": pixel_vectors(s.split("train"), feats["database"].index, crop),
                          "queries": pixel_vectors(s.split(query_split), feats["queries"].index, crop)}}
    arms = {"fc7": {"label": f"fc7 features, exact L2 ({vectors['fc7']['database'].shape[1]}-d float32)",
                    "per_seed": {"0": _exact(vectors["fc7"], labels, params["k"])}},
            "pixels": {"label": f"raw pixels, exact L2 ({vectors['pixels']['database'].shape[1]}-d, centre patch)",
                       "per_seed": {"0": _exact(vectors["pixels"], labels, params["k"])}}}
    done_path = ctx.out / "codes.json"
    done = json.loads(done_path.read_text()) if done_path.is_file() else {}
    for b in bits:
        arms[f"codes-{b}"] = {"label": f"{b}-bit codes of fc7, Hamming ({b // 8} bytes)", "per_seed": {}}
        for seed in seeds:
            key = f"{b}-seed{seed}"
            if key not in done:
                ctx.runs += 1
                ctx.log(f"[{ctx.name}] codes {key}")
                done[key] = _codes(vectors["fc7"], labels, params, b, seed)
                done_path.write_text(json.dumps(done, indent=2))
            arms[f"codes-{b}"]["per_seed"][str(seed)] = done[key]
    doc = _record(ctx, seeds, params, arms, source, store, len(labels["database"]), len(labels["queries"]))
    record.write(doc, ctx.out / "record.json")
    return common.finish(ctx, seeds=seeds, results={"arms": arms, "params": params, "checkpoint": str(source),
                                                    "store": str(store)},
                         table=record.render(doc), plot=None, paper={}, notes=doc["notes"])


def _network(ctx: common.Context, params: dict[str, Any]) -> tuple[Path, Path]:
    """(checkpoint or run directory, store): the given run, or one trained here."""
    if params["run"]:
        source = Path(params["run"])
        if not source.exists():
            raise UserError(f"{source} does not exist: name a train run directory or checkpoint", key="param")
        store = params["store"]
        if not store:
            info = source / "run.json" if source.is_dir() else source.parent.parent / "run.json"
            store = json.loads(info.read_text()).get("store", "") if info.is_file() else ""
        if not store or not Path(store).is_dir():
            raise UserError(f"the store {source} was trained on is unknown or gone: give --param store=PATH",
                            key="param")
        return source, Path(store)
    store = Path(params["store"]) if params["store"] else \
        stores.prepared_from_tree(ctx, "cifar10-32", "cifar10", 32)
    overrides = [f"model.width={params['width']}", f"schedule.max_epochs={params['train_epochs']}",
                 f"optim.batch_size={params['batch_size']}"]
    config = common.paper_config(ctx, PRESET, store, 0, overrides, max_steps=params["train_steps"])
    from alexnet.data.store import Store

    config.data.crop = min(config.data.crop, Store(store).image_size)
    done = subruns.train_sub_run(ctx, "network", config)
    if done["status"] != "finished":
        raise UserError(f"training the network failed: {done['reason']}")
    return ctx.run_dir("network"), store


def _subset(ctx: common.Context, store: Path, params: dict[str, Any]) -> Path:
    if not (params["database_images"] or params["queries"]):
        return store
    return stores.derived_store(ctx, store, train=params["database_images"], val=params["queries"], train_eval=1)


def _exact(vectors: dict[str, np.ndarray], labels: dict[str, np.ndarray], k: int) -> dict[str, Any]:
    from alexnet.probes.codes import precision_at
    from alexnet.probes.neighbours import knn

    t0 = time.perf_counter()
    nb = knn(vectors["database"], vectors["queries"], k, engine="auto")
    seconds = time.perf_counter() - t0
    return {"precision": precision_at(labels["database"], nb.indices, labels["queries"]),
            "bytes_per_image": int(vectors["database"].shape[1] * 4),
            "queries_per_second": len(labels["queries"]) / max(seconds, 1e-9), "engine": nb.engine}


def _codes(vectors: dict[str, np.ndarray], labels: dict[str, np.ndarray], params: dict[str, Any], bits: int,
           seed: int) -> dict[str, Any]:
    from alexnet.probes.codes import hamming_knn, precision_at, train_codes

    model = train_codes(vectors["database"], bits, hidden=params["hidden"], epochs=params["code_epochs"], seed=seed)
    db, q = model.encode(vectors["database"]), model.encode(vectors["queries"])
    t0 = time.perf_counter()
    _, idx = hamming_knn(db, q, params["k"])
    seconds = time.perf_counter() - t0
    return {"precision": precision_at(labels["database"], idx, labels["queries"]), "bytes_per_image": bits // 8,
            "queries_per_second": len(labels["queries"]) / max(seconds, 1e-9),
            "train_seconds": round(model.seconds, 1), "final_mse": model.history[-1]}


def _record(ctx: common.Context, seeds: list[int], params: dict[str, Any], arms: dict[str, Any], source: Path,
            store: Path, n_db: int, n_q: int) -> dict[str, Any]:

    k = params["k"]
    return {
        "name": "retrieval",
        "question": f"How often are a query's {k} nearest training images of its class, by fc7 features, by "
                    "short binary codes of them (§6.1's proposal) and by raw pixels?",
        **common.record_head(ctx, seeds),
        "arms": arms,
        "table": {"columns": [{"metric": "precision", "label": f"precision@{k}", "format": "pct"},
                              {"metric": "bytes_per_image", "label": "bytes per image", "format": "int"},
                              {"metric": "queries_per_second", "label": "queries/s", "format": "int"}],
                  "rows": list(arms)},
        "verdicts": [{"claim": "fc7 features retrieve the class better than raw pixels (§6.1)", "a": "fc7",
                      "b": "pixels", "metric": "precision", "smaller_is_better": False}],
        "notes": [f"Budget `{ctx.budget}`: {params}.",
                  f"Network: {source}; store: {store}; database {n_db} training images, {n_q} queries.",
                  "Exact searches are deterministic given the checkpoint (one value each, so their verdict needs "
                  "the spread of several networks, not measured here); the codes' seeds are the auto-encoder's.",
                  f"Auto-encoder: {params['hidden']} hidden units, {params['code_epochs']} epochs on the database's "
                  "fc7 vectors (§6.1's proposal; our design, not the paper's)."],
    }
