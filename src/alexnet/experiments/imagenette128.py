"""Experiment ``imagenette-128``: the workhorse -- the paper's whole layer pattern at 128 px on real photos, on a CPU.

Store: Imagenette's 224-px ImageNet photographs prepared at 146 px (128 · 256/224, §2's
ratio), with ``holdout`` training images per class set aside: the plateau schedule,
early stopping and the best checkpoint are decided on them; val (ILSVRC-2012
validation images) is read once per reported number.  Network and recipe: the
``imagenette-128`` preset (two columns, LRN, overlapping pooling, dropout, random
128-px crops and reflections, PCA colour noise, §5's optimiser and plateau schedule).

Arms (``--param arms=workhorse,no-lrn,...``) are the paper's ablations on this
workhorse: ``no-lrn`` (§3.3), ``pool2`` (§3.4), ``no-dropout`` (§4.2), ``one-column``
(§3.2).  Per arm and seed: train (resumable), evaluate ``best.pt`` on val with the
centre patch and ten patches, and on its training images with the centre patch (the
val − train gap is §4.2's overfitting), and the load of its LRN layers (α·Σa²/k on holdout images: does
the divisor vary, or does the layer only rescale?).  The workhorse's seeds also give §6's ensembles (every
choice of k of the n nets averaged) and §6.1's colour statistic of conv1 per column.
Each workhorse net's ten-patch probabilities are kept as a small file
(``probs_ten-workhorse-seed<S>.npz``: probabilities and labels) so that nets trained in
different runs can be averaged later (``tools/ensemble_record.py``).

Besides results.json/results.md and a plot, the run directory gets ``record.json``,
a results file in :mod:`alexnet.experiments.record`'s format, to commit as
``docs/results/imagenette-128.json``.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.experiments import common, plotting, record, stores, subruns, tables
from alexnet.paper import POOL

DESCRIPTION = "the 128-px workhorse on Imagenette (CPU): accuracy, ablations, ensembles, conv1 colour (goal >= 80%)"
SEEDS = {"quick": 1, "full": 1}
GOAL_ACCURACY = 0.80  # the project's goal for this preset (issue "Training that learns"), not a paper number
PRESET = "imagenette-128"
#: arm -> (config overrides, label, the paper's claim it measures)
ARMS: dict[str, tuple[list[str], str, str]] = {
    "workhorse": ([], "imagenette-128 preset", ""),
    "no-lrn": (["model.variants=no-lrn"], "without LRN", "§3.3: LRN lowers top-1/top-5 error"),
    "pool2": (["model.variants=pool2"], f"{POOL.nonoverlap_size}×{POOL.nonoverlap_size} pooling, stride "
              f"{POOL.nonoverlap_stride}", "§3.4: overlapping pooling lowers error"),
    "no-dropout": (["model.variants=no-dropout"], "without dropout", "§4.2: dropout reduces overfitting"),
    "one-column": (["model.variants=one-column"], "one column", "§3.2: two columns lower error"),
}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"size": 146, "holdout": 50, "train_images": 400, "val_images": 100, "max_steps": 6,
              "batch_size": 32, "arms": "workhorse"},
    "full": {"size": 146, "holdout": 50, "train_images": 0, "val_images": 0, "max_steps": 0,
             "batch_size": 0, "arms": "workhorse"},
}
METRICS = ("centre_top1_error", "centre_top5_error", "ten_top1_error", "ten_top5_error")


def run(ctx: common.Context, params: dict[str, Any]) -> dict[str, Any]:
    seeds = ctx.seed_list(SEEDS)
    arms = common.names_of(params["arms"], ARMS, "arms", "arm")
    common.start(ctx, seeds)
    t0 = time.perf_counter()
    base = stores.prepared_from_tree(ctx, f"imagenette-{params['size']}", "imagenette-224", params["size"],
                                     holdout=params["holdout"])
    prepare_seconds = time.perf_counter() - t0
    store = base
    if params["train_images"] or params["val_images"]:
        store = stores.derived_store(ctx, base, train=params["train_images"], val=params["val_images"],
                                     train_eval=64)
    per_arm: dict[str, dict[str, Any]] = {}
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for arm in arms:
        per_arm[arm] = {}
        for seed in seeds:
            per_arm[arm][str(seed)] = _seed(ctx, arm, seed, store, params, ax if arm == "workhorse" else None)
    plotting.style_error_axes(ax, "Imagenette at 128 px, imagenette-128 preset (holdout and val, centre patch)")
    plot = plotting.save_figure(fig, ctx.out / "imagenette-128.png")
    doc = _record(ctx, seeds, arms, per_arm, params, prepare_seconds, store)
    record.write(doc, ctx.out / "record.json")
    table = record.render(doc)
    return common.finish(ctx, seeds=seeds, results={"per_arm": per_arm, "params": params,
                                                    "prepare_seconds": round(prepare_seconds, 1)},
                         table=table, plot=plot, paper={}, notes=doc["notes"])


def _seed(ctx: common.Context, arm: str, seed: int, store: Any, params: dict[str, Any], ax: Any) -> dict[str, Any]:
    from alexnet.data.store import Store

    overrides = list(ARMS[arm][0])
    if params["batch_size"]:
        overrides.append(f"optim.batch_size={params['batch_size']}")
    config = common.paper_config(ctx, PRESET, store, seed, overrides, max_steps=params["max_steps"])
    s = Store(store)
    config.data.crop = min(config.data.crop, s.image_size)  # tiny test stores
    sub = f"{arm}-seed{seed}"
    done = subruns.train_sub_run(ctx, sub, config)
    best = subruns.best_or_last(ctx.run_dir(sub))
    ev = subruns.evaluate_sub_run(ctx, sub, store, "val", ("centre", "ten"), checkpoint=best)
    # §4.2's overfitting: the same net's centre-patch error on its own training images (eval mode: no
    # augmentation, no dropout); a derived test store has a train_eval subset, the full store the whole split
    fit = subruns.evaluate_sub_run(ctx, sub, store, "train_eval" if "train_eval" in s.splits() else "train",
                                   ("centre",), checkpoint=best)
    values: dict[str, Any] = {m: ev[m] for m in METRICS}
    values.update(train_centre_top1_error=fit["centre_top1_error"],
                  overfit_centre_top1=ev["centre_top1_error"] - fit["centre_top1_error"])
    values.update(lrn_load(ctx.run_dir(sub) / "checkpoints" / best, s))
    values.update(ten_top1_accuracy=1 - ev["ten_top1_error"], train_seconds=done["wall_seconds"],
                  eval_seconds=round(ev.get("seconds", 0.0) + fit.get("seconds", 0.0), 1),  # as first measured
                  epochs=done["epochs_completed"], steps=done["steps"], status=done["status"], checkpoint=best)
    values["wall_seconds"] = round(values["train_seconds"] + values["eval_seconds"], 1)
    if ax is not None:
        plotting.plot_history(ax, subruns.history(ctx.run_dir(sub)), f"seed {seed}")
    if arm == "workhorse":
        from alexnet.probes.kernels import analyse_checkpoint

        values.update(colour_values(analyse_checkpoint(ctx.run_dir(sub) / "checkpoints" / best,
                                                       ctx.out / f"conv1-{sub}.png")))
        ev_dir = _eval_dir(ctx, sub, best)
        save_net_probs(ctx.out / probs_name(seed), np.load(ev_dir / "probs_ten.npy"), np.load(ev_dir / "labels.npy"))
    return values


def lrn_load(checkpoint: Path, store: Any, images: int = 500) -> dict[str, float]:
    """§3.3's LRN at work in a trained net: α·Σa²/k of each LRN layer (mean and max over images, maps and
    positions; :func:`alexnet.experiments.smallnet.lrn_statistics`) on the first ``images`` of the decision
    split (holdout, else train) with the centre patch, as the net sees them in evaluation.

    The layer divides by k^β·(1 + α·Σa²/k)^β: a mean far below 1 would mean that it only rescales, and an
    ablation without it would test nothing.  Keys ``<layer>_load_mean`` and ``<layer>_load_max``; none for a
    net without LRN.
    """
    from alexnet.data.batches import EvalBatches
    from alexnet.experiments.smallnet import lrn_statistics
    from alexnet.inference.trained import TrainedRun

    run = TrainedRun.open(checkpoint, device="cpu")
    part = store.split("holdout" if "holdout" in store.splits() else "train")
    x, _, _ = EvalBatches(part, batch_size=min(images, len(part)), augment=run.augmentation(store.image_size))[0]
    out: dict[str, float] = {}
    for layer, stat in lrn_statistics(run.model, x).items():
        out[f"{layer}_load_mean"], out[f"{layer}_load_max"] = stat["mean"], stat["max"]
    return out


def _eval_dir(ctx: common.Context, sub: str, checkpoint: str) -> Any:
    """Where :func:`subruns.evaluate_sub_run` saved a checkpoint's evaluation on val."""
    return ctx.run_dir(sub) / ("eval-val" if checkpoint == "last.pt" else f"eval-val-{checkpoint.removesuffix('.pt')}")


_PROBS_PREFIX, _PROBS_SUFFIX = "probs_ten-workhorse-seed", ".npz"


def probs_name(seed: int) -> str:
    """The file name of a workhorse net's kept ten-patch probabilities."""
    return f"{_PROBS_PREFIX}{seed}{_PROBS_SUFFIX}"


def probs_seed(name: str) -> int | None:
    """The seed in a file name written by :func:`probs_name`, or None for any other name."""
    digits = name.removeprefix(_PROBS_PREFIX).removesuffix(_PROBS_SUFFIX)
    # "seed03" or "seed+3" are not names probs_name writes: only canonical digits round-trip.
    return int(digits) if digits.isdigit() and probs_name(int(digits)) == name else None


def save_net_probs(path: Path, probs: np.ndarray, labels: np.ndarray) -> Path:
    """Keep one net's (N, C) ten-patch probabilities on val with their (N,) labels (float32, int16; ~150 KB
    compressed for Imagenette's 3,925 images), so nets of different runs can be averaged (§6)."""
    probs, labels = np.asarray(probs, dtype=np.float32), np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"{path}: probabilities {probs.shape} and labels {labels.shape} do not match")
    np.savez_compressed(path, probs=probs, labels=labels.astype(np.int16))
    return path


def load_net_probs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(probs (N, C) float32, labels (N,) int64) of a file written by :func:`save_net_probs`."""
    try:
        with np.load(path) as f:
            return f["probs"].astype(np.float32), f["labels"].astype(np.int64)
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path}: not a kept-probabilities file ({err})") from None


def ensemble_arms(nets: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """§6: for k = 1..n, every choice of k of the n nets (seed -> (probs, labels)) with its probabilities
    averaged; the arm ``ensemble-k`` holds each choice's ten-patch errors, keyed by its seeds ("0+3").

    §6 averages "the predictions of" the nets; the mean over choices uses every net equally, and its spread
    shows how much the choice of nets matters (choices share nets, so they are not independent).
    """
    from alexnet.inference.scoring import topk_error_rates

    seeds = sorted(nets)
    if not seeds:
        return {}
    labels = nets[seeds[0]][1]
    for s in seeds[1:]:
        if not np.array_equal(nets[s][1], labels):
            raise ValueError(f"the net of seed {s} was evaluated on other images (or another order) than the "
                             f"net of seed {seeds[0]}: their probabilities cannot be averaged")
    out: dict[str, dict[str, Any]] = {}
    n = len(seeds)
    for k in range(1, n + 1):
        per: dict[str, Any] = {}
        for choice in itertools.combinations(seeds, k):
            e1, e5 = topk_error_rates(np.mean([nets[s][0] for s in choice], axis=0), labels)
            per["+".join(map(str, choice))] = {"ten_top1_error": e1, "ten_top5_error": e5}
        out[f"ensemble-{k}"] = {"label": f"{k} net{'s' if k > 1 else ''} averaged (§6; every choice of {k} of "
                                         f"{n}: seeds {', '.join(map(str, seeds))})", "per_seed": per}
    return out


_ENSEMBLE_NOTE = "§6's ensembles recomputed from the kept probabilities of workhorse seeds "


def with_kept_ensembles(doc: dict[str, Any], paths: Sequence[Path]) -> dict[str, Any]:
    """A copy of an imagenette-128 results document whose §6 ensemble rows are recomputed (:func:`ensemble_arms`)
    from kept probability files (``probs_ten-workhorse-seed<S>.npz``), so nets of different runs are averaged.

    Each file must be of a workhorse seed in the document and give that seed's recorded ten-patch top-1 error:
    a file of another net (or another store) is refused, naming it.
    """
    from alexnet.inference.scoring import topk_error_rates

    workhorse = doc.get("arms", {}).get("workhorse", {}).get("per_seed", {})
    nets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for path in map(Path, paths):
        seed = probs_seed(path.name)
        if seed is None:
            raise ValueError(f"{path}: not a kept-probabilities file name ({_PROBS_PREFIX}<S>{_PROBS_SUFFIX})")
        if seed in nets:
            raise ValueError(f"{path}: seed {seed} is given twice")
        recorded = workhorse.get(str(seed), {}).get("ten_top1_error")
        if recorded is None:
            raise ValueError(f"{path}: the results file has no workhorse seed {seed}")
        nets[seed] = load_net_probs(path)
        top1 = topk_error_rates(*nets[seed])[0]
        if abs(top1 - recorded) > 1e-9:
            raise ValueError(f"{path}: gives {top1:.2%} top-1 error; the results file records {recorded:.2%} "
                             f"for workhorse seed {seed}")
    out = copy.deepcopy(doc)
    out["arms"] = {k: v for k, v in out["arms"].items() if not k.startswith("ensemble-")}
    rows = [r for r in out["table"]["rows"] if not r.startswith("ensemble-")]
    kept = ensemble_arms(nets)
    out["arms"].update(kept)
    at = rows.index("workhorse") + 1 if "workhorse" in rows else len(rows)
    out["table"]["rows"] = rows[:at] + list(kept) + rows[at:]
    # one note for the rows as they now are: an earlier rebuild's note names nets that may no longer be all
    out["notes"] = [*(n for n in out.get("notes", []) if not n.startswith(_ENSEMBLE_NOTE)),
                    f"{_ENSEMBLE_NOTE}{', '.join(map(str, sorted(nets)))} (tools/ensemble_record.py)."]
    return out


_COLOUR_NOTE = "§6.1's split null (colour_energy_split_null, _p) of workhorse seeds "
_COLOUR_NULL_KEYS = ("colour_energy_split_null", "colour_energy_split_p")


def colour_values(summary: dict[str, Any]) -> dict[str, float]:
    """A workhorse seed's §6.1 values from conv1's colour summary (:func:`alexnet.probes.kernels.colour_summary`):
    ``colour_energy_column<C>`` per column and, for two columns, the split null (``_COLOUR_NULL_KEYS``)."""
    values = {f"colour_energy_column{c['column']}": c["colour_energy"] for c in summary.get("per_column", [])}
    values.update({key: summary[key] for key in _COLOUR_NULL_KEYS if key in summary})
    return values


def with_colour_null(doc: dict[str, Any], checkpoints: Sequence[Path]) -> dict[str, Any]:
    """A copy of an imagenette-128 results document whose workhorse seeds gain §6.1's split null
    (:func:`alexnet.probes.kernels.column_split_null` of conv1's per-kernel colour energy), computed from their
    checkpoints, for seeds recorded before the experiment measured it.

    Each checkpoint must be a workhorse seed of the document (its seed read from the checkpoint's config) whose
    conv1 gives that seed's recorded colour energy per column: another net is refused, naming the file.
    """
    from alexnet.inference.trained import TrainedRun
    from alexnet.probes.kernels import colour_summary

    out = copy.deepcopy(doc)
    workhorse = out.get("arms", {}).get("workhorse", {}).get("per_seed", {})
    done: list[int] = []
    for path in map(Path, checkpoints):
        run = TrainedRun.open(path, device="cpu")
        seed = (run.checkpoint.get("config") or {}).get("run", {}).get("seed")
        values = workhorse.get(str(seed))
        if values is None or "colour_energy_column1" not in values:
            raise ValueError(f"{path}: the results file has no workhorse seed {seed} with its conv1 colour")
        if seed in done:
            raise ValueError(f"{path}: seed {seed} is given twice")
        if run.model.columns != 2:
            raise ValueError(f"{path}: a net of {run.model.columns} column(s); §6.1's split null compares two")
        fresh = colour_values(colour_summary(run.model.conv1_kernels().cpu().numpy(), run.model.columns))
        for column in (1, 2):
            measured, recorded = fresh[f"colour_energy_column{column}"], values[f"colour_energy_column{column}"]
            if abs(measured - recorded) > 1e-9:
                raise ValueError(f"{path}: column {column}'s colour energy is {measured:.6f}; the "
                                 f"results file records {recorded:.6f} for workhorse seed {seed}")
        values.update({key: fresh[key] for key in _COLOUR_NULL_KEYS})
        done.append(seed)
    with_null = sorted(int(s) for s, v in workhorse.items() if _COLOUR_NULL_KEYS[0] in v)
    out["notes"] = [*(n for n in out.get("notes", []) if not n.startswith(_COLOUR_NOTE)),
                    f"{_COLOUR_NOTE}{', '.join(map(str, with_null))} (recorded by the experiment, or computed "
                    "from their checkpoints by tools/colour_record.py)."]
    return out


def _ensembles(ctx: common.Context, seeds: list[int]) -> dict[str, dict[str, Any]]:
    """§6's ensembles of this run's workhorse nets, from their kept probabilities."""
    return ensemble_arms({s: load_net_probs(ctx.out / probs_name(s)) for s in seeds})


def _record(ctx: common.Context, seeds: list[int], arms: list[str], per_arm: dict[str, dict[str, Any]],
            params: dict[str, Any], prepare_seconds: float, store: Any) -> dict[str, Any]:

    doc_arms = {arm: {"label": ARMS[arm][1], "overrides": ARMS[arm][0], "claim": ARMS[arm][2],
                      "per_seed": per_arm[arm]} for arm in arms}
    if "workhorse" in arms and len(seeds) > 1:
        doc_arms.update(_ensembles(ctx, seeds))
    verdicts = [{"claim": ARMS[arm][2], "a": "workhorse", "b": arm, "metric": "ten_top1_error"}
                for arm in arms if arm != "workhorse" and "workhorse" in arms]
    workhorse = list(per_arm.get("workhorse", {}).values())
    notes = [f"Budget `{ctx.budget}`: {params}. Store {store} (prepared in {prepare_seconds:.0f} s)."]
    if workhorse:  # the goal is the workhorse's; an ablation-only run has nothing to say about it
        acc = [v["ten_top1_accuracy"] for v in workhorse]
        minutes = ", ".join(f"{v['wall_seconds'] / 60:.1f}" for v in workhorse)
        notes.append(f"Goal: ≥ {GOAL_ACCURACY:.0%} top-1 accuracy with ten patches within 60 minutes on 2 CPU "
                     f"cores; measured {tables.pct_pm(acc)} accuracy, wall (train + eval) {minutes} minutes per "
                     "seed.")
    return {
        "name": "imagenette-128",
        "question": "How well does the paper's whole layer pattern learn real photographs at 128 px on 2 CPU "
                    "cores within an hour, and what do the paper's ablations do to it?",
        **common.record_head(ctx, seeds),
        "arms": doc_arms,
        "table": {
            "columns": [{"metric": "ten_top1_error", "label": "top-1 error, ten patches", "format": "pct"},
                        {"metric": "ten_top5_error", "label": "top-5 error, ten patches", "format": "pct"},
                        {"metric": "centre_top1_error", "label": "top-1 error, centre", "format": "pct"},
                        {"metric": "train_centre_top1_error", "label": "train top-1 error, centre",
                         "format": "pct"},
                        {"metric": "overfit_centre_top1", "label": "val − train, centre (§4.2)",
                         "format": "pct"},
                        {"metric": "lrn1_load_mean", "label": "α·Σa²/k, lrn1 (mean, §3.3)", "format": "num"},
                        {"metric": "lrn2_load_mean", "label": "α·Σa²/k, lrn2 (mean)", "format": "num"},
                        {"metric": "wall_seconds", "label": "train + eval, s", "format": "int"}],
            "rows": list(doc_arms),
        },
        "verdicts": verdicts,
        "notes": notes,
    }
