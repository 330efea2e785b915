"""Experiment 2, ``lrn``: §3.3 on CIFAR-10, the four-layer network with and without response normalisation.

The network of :mod:`alexnet.experiments.smallnet` (ReLU) with the paper's
cross-map LRN (k=2, n=5, alpha=1e-4, beta=0.75, alpha multiplying the sum as
printed) after pool1 and pool2 -- where cuda-convnet's CIFAR-10 networks
normalise -- or without it; everything else equal: SGD with momentum 0.9,
weight decay 0.0005, reflections and +-2-pixel translations, the rate divided
by 10 for the last 20% of the steps.

Inputs are at §2's scale by default (``input_scale="raw"``: 0-255 pixel values
minus the mean image, no division by a standard deviation), the scale the
paper's k and alpha were chosen for; ``std`` divides by the global standard
deviation (about 64), which makes alpha * sum(a^2) ~ 1e-4 against k = 2.  Each
run records alpha * sum(a^2) / k of both LRN layers (mean and max over a batch,
:func:`alexnet.experiments.smallnet.lrn_statistics`) at initialisation, every
``stats_every`` steps, and with its best weights on a holdout batch, so the
results show whether the divisor actually moves.

Decisions on a holdout slice of the training set (``holdout_per_class`` images
per class): each arm's rate is the one with the lowest best holdout error on
seed 0 (a sweep that extends itself while the best is at an edge, up to
``max_extensions``), and each run stops at (keeps) its best holdout weights.  A run
whose training loss is still at chance after ``give_up_after`` steps stops there
(a dead rate; it keeps its holdout error).
The test split is read once per reported run, with those weights.  The other
seeds train at the chosen rate.  Writes ``record.json``
(:mod:`alexnet.experiments.record`).

Arms (``--param arms=lrn,no-lrn``, both by default) are independent (each its own sweep and
seeds), so one process per arm can share two cores and a ``--keep`` folder; a later run with
both arms then trains nothing and writes the whole record (with the verdict, which needs both).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.experiments import common, plotting, record, stores
from alexnet.experiments.smallnet import FourLayerNet, SmallRun, cifar_tensors, error_rate, train_small
from alexnet.experiments.sweep import bracketing_sweep
from alexnet.paper import CIFAR, LEARNING, LRN_PARAMS

DESCRIPTION = (f"§3.3: four-layer CNN on CIFAR-10 with and without LRN at the paper's input scale (paper: "
               f"{CIFAR.lrn_test_error_with:.0%} vs {CIFAR.lrn_test_error_without:.0%} test error)")
#: sub-runs are result.json (+ final.json for reported runs): ``--keep`` carries them to a later session
KEEPS_SUB_RUNS = True
#: ``--param arms=…`` picks sub-runs (named by arm), it changes none: sessions may keep different arms in one folder
KEEP_NEUTRAL_PARAMS = ("arms",)
SEEDS = {"quick": 1, "full": 3}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"train_images": 2560, "test_images": 1000, "holdout_per_class": 25, "steps": 200,
              "lrs": [0.0003, 0.001], "max_extensions": 0, "rate_factor": 3.0, "batch_size": 128,
              "input_scale": "raw", "init": "default", "eval_every": 50, "stats_every": 50, "give_up_after": 0,
              "arms": "lrn,no-lrn"},
    "full": {"train_images": 0, "test_images": 0, "holdout_per_class": 500, "steps": 20000,
             "lrs": [0.0001, 0.0003, 0.001, 0.003], "max_extensions": 3, "rate_factor": 3.0, "batch_size": 128,
             "input_scale": "raw", "init": "default", "eval_every": 500, "stats_every": 500, "give_up_after": 1000,
             "arms": "lrn,no-lrn"},
}
ARMS = {"lrn": (True, "with LRN"), "no-lrn": (False, "without LRN")}
LAYERS = ("lrn1", "lrn2")
TRAIN_ERROR_IMAGES = 1000  # training images (a seeded slice) the final training error is measured on


def run(ctx: common.Context, params: dict[str, Any]) -> dict[str, Any]:
    seeds = ctx.seed_list(SEEDS)
    arms = common.names_of(params["arms"], ARMS, "arms", "arm")
    common.start(ctx, seeds)
    base = stores.prepared_from_tree(ctx, "cifar10-32", "cifar10", 32)
    store = stores.derived_store(ctx, base, train=params["train_images"], val=params["test_images"],
                                 train_eval=1)
    data = cifar_tensors(store, ("train", "val"), scale=params["input_scale"],
                         holdout_per_class=params["holdout_per_class"])
    per_arm: dict[str, dict[str, Any]] = {}
    sweeps: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        lrn = ARMS[arm][0]

        def score(lr: float, lrn: bool = lrn) -> tuple[int, float]:
            r = _train(ctx, params, data, lrn, lr, seeds[0])
            return (1, 1.0) if r["diverged"] else (0, r["holdout_error"])

        sweep = bracketing_sweep(list(params["lrs"]), score, factor=params["rate_factor"],
                                 max_extensions=params["max_extensions"])
        sweeps[arm] = {"points": [{"lr": lr, "diverged": s[0] == 1, "holdout_error": None if s[0] else s[1]}
                                  for lr, s in sweep["scores"].items()],
                       **{k: sweep[k] for k in ("best", "status", "extensions", "range")}}
        runs[arm] = [_train(ctx, params, data, lrn, sweep["best"], seed) for seed in seeds]
        per_arm[arm] = {str(r["seed"]): _seed_values(ctx, params, r, data) for r in runs[arm]}
    doc = _record(ctx, seeds, params, per_arm, sweeps, data)
    record.write(doc, ctx.out / "record.json")
    plot = _plot(ctx.out / "lrn.png", runs, per_arm)
    return common.finish(ctx, seeds=seeds, results={"per_arm": per_arm, "sweeps": sweeps, "params": params},
                         table=record.render(doc), plot=plot,
                         paper={"lrn_test_error_with": CIFAR.lrn_test_error_with,
                                "lrn_test_error_without": CIFAR.lrn_test_error_without},
                         notes=doc["notes"])


def _train(ctx: common.Context, params: dict[str, Any], data: dict[str, Any], lrn: bool, lr: float,
           seed: int, restore: bool = True) -> dict[str, Any]:
    sub = f"{'lrn' if lrn else 'no-lrn'}-lr{lr:g}-seed{seed}"
    cfg = SmallRun(activation="relu", lrn=lrn, lr=float(lr), steps=int(params["steps"]),
                   batch_size=int(params["batch_size"]), weight_decay=LEARNING.weight_decay, augment=True,
                   seed=seed, lr_drop_at=0.8, threads=ctx.threads, init=params["init"],
                   eval_every=int(params["eval_every"]), stats_every=int(params["stats_every"]),
                   give_up_after=int(params["give_up_after"]))
    ctx.runs += 1
    ctx.log(f"[{ctx.name}] {sub}")
    # no test split here: the sweep's runs never see it; _seed_values reads it once for the reported runs
    with common.kept_sub_run(ctx, sub, restore=restore):
        r = train_small(ctx.run_dir(sub), cfg, data["train"], None, log=ctx.log if ctx.progress else None,
                        holdout=data["holdout"])
    return {"sub": sub, "lrn": lrn, "seed": seed, "lr": float(lr), **r}


def _seed_values(ctx: common.Context, params: dict[str, Any], r: dict[str, Any],
                 data: dict[str, Any]) -> dict[str, Any]:
    """One reported run: the test error of its best holdout weights (read once, cached in ``final.json`` and
    kept with ``--keep``), its training error, and the LRN statistic at initialisation and with the best weights.

    A run restored from ``--keep`` before its final measurement has no weights here: it is trained again."""
    import torch

    run_dir = ctx.run_dir(r["sub"])
    final = run_dir / "final.json"
    weights_kept = any((run_dir / name).is_file() for name in ("best.pt", "model.pt"))
    if not r["diverged"] and not final.is_file() and not weights_kept:
        ctx.log(f"[{ctx.name}] {r['sub']}: kept without its test figures or weights; training it again")
        (run_dir / "result.json").unlink()
        r = _train(ctx, params, data, r["lrn"], r["lr"], r["seed"], restore=False)
    values: dict[str, Any] = {"lr": r["lr"], "steps": r["steps"], "best_step": r.get("best_step"),
                              "holdout_error": r.get("holdout_error"), "diverged": r["diverged"],
                              "train_seconds": r["wall_seconds"], "seconds_per_step": r["seconds_per_step"]}
    if r["diverged"]:
        return values
    if final.is_file():
        measured = json.loads(final.read_text())
    else:
        x, y = data["train"]
        model = FourLayerNet("relu", r["lrn"], int(y.max()) + 1, x.shape[2])
        weights = run_dir / ("best.pt" if (run_dir / "best.pt").is_file() else "model.pt")
        model.load_state_dict(torch.load(weights, weights_only=True))
        rows = torch.from_numpy(np.sort(np.random.default_rng(0).permutation(len(y))[:TRAIN_ERROR_IMAGES]))
        measured = {"test_error": error_rate(model, *data["val"]), "test_images": int(len(data["val"][1])),
                    "train_error": error_rate(model, x[rows], y[rows]), "weights": weights.name}
        final.write_text(json.dumps(measured, indent=2))
        common.keep_finished(ctx, r["sub"])
    values.update(measured)
    stats = r.get("lrn_statistics") or []
    if stats:
        values["lrn_statistics"] = stats
        best = r.get("lrn_statistics_best") or stats[-1]  # without a holdout: the last training batch
        for layer in LAYERS:
            values[f"{layer}_mean_init"] = stats[0][layer]["mean"]
            values[f"{layer}_max_init"] = stats[0][layer]["max"]
            values[f"{layer}_mean"] = best[layer]["mean"]
            values[f"{layer}_max"] = best[layer]["max"]
            values[f"{layer}_mean_peak"] = max(s[layer]["mean"] for s in stats)
    return values


def _record(ctx: common.Context, seeds: list[int], params: dict[str, Any], per_arm: dict[str, Any],
            sweeps: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:

    arms = {arm: {"label": f"{ARMS[arm][1]} (lr {sweeps[arm]['best']:g})", "per_seed": per_arm[arm]}
            for arm in per_arm}
    stat = "α·Σa²/k"
    columns = [{"metric": "test_error", "label": "test error", "format": "pct"},
               {"metric": "holdout_error", "label": "holdout error (decides)", "format": "pct"},
               {"metric": "train_error", "label": f"train error ({TRAIN_ERROR_IMAGES} imgs)", "format": "pct"}]
    for layer in LAYERS:
        for metric, what in (("mean_init", "mean at init"), ("mean", "mean, best weights"),
                             ("max", "max, best weights")):
            columns.append({"metric": f"{layer}_{metric}", "label": f"{stat} {layer}, {what}", "format": "num",
                            "missing": "no LRN"})
    n = {k: int(len(v[1])) for k, v in data.items()}
    notes = [f"Budget `{ctx.budget}`: {params}.",
             f"Images: {n['train']} to train, {n['holdout']} holdout (decides the rate and the stopping point), "
             f"{n['val']} test (read once per reported run).",
             f"Inputs: {params['input_scale']} ("
             + ("0-255 pixel values minus the mean image, as §2" if params["input_scale"] == "raw"
                else "mean image subtracted, divided by the global standard deviation") + ").",
             f"LRN: k = {LRN_PARAMS.k:g}, n = {LRN_PARAMS.n}, α = {LRN_PARAMS.alpha:g} multiplying the sum as "
             f"printed in §3.3, β = {LRN_PARAMS.beta:g}; the divisor is k^β·(1 + {stat})^β, so {stat} ≪ 1 means "
             "the LRN only rescales its input.",
             *(f"Rate sweep, {arm}: " + ", ".join(
                 f"{p['lr']:g} → " + ("diverged" if p["diverged"] else f"{100 * p['holdout_error']:.2f}%")
                 for p in s["points"]) + f" (holdout error, seed {seeds[0]}); chosen {s['best']:g}: {s['status']}."
               for arm, s in sweeps.items())]
    return {
        "name": "lrn",
        "question": "Does the paper's LRN (§3.3) lower the four-layer network's CIFAR-10 test error when the "
                    "activations are at the scale its constants were chosen for, and does its divisor move?",
        **common.record_head(ctx, seeds),
        "arms": arms,
        "sweeps": sweeps,
        "table": {"columns": columns, "rows": list(arms),
                  "reference": [{"label": "paper, with LRN", "values": {"test_error": CIFAR.lrn_test_error_with}},
                                {"label": "paper, without LRN",
                                 "values": {"test_error": CIFAR.lrn_test_error_without}}]},
        # the verdict compares the arms: a run of one arm (arms=lrn) has none
        "verdicts": [{"claim": "§3.3: LRN lowers the test error", "a": "lrn", "b": "no-lrn",
                      "metric": "test_error"}] if set(ARMS) <= set(arms) else [],
        "notes": notes,
    }


def _plot(path: Path, runs: dict[str, list[dict[str, Any]]], per_arm: dict[str, Any]) -> Path:
    plt = plotting.pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(11, 3.2), gridspec_kw={"width_ratios": [2, 1, 1.5]},
                              layout="constrained")  # keeps the panels' labels off each other
    colour = {"lrn": "tab:blue", "no-lrn": "tab:orange"}
    for arm, rs in runs.items():
        for r in rs:
            curve = np.asarray(r["trailing_train_error"])
            x = (np.arange(len(curve)) * r["trailing_every"] + 1) / r["steps_per_epoch"]
            a.plot(x, curve, "-" if r["lrn"] else "--", color=colour[arm], linewidth=1,
                   label=f"{ARMS[arm][1]} seed {r['seed']}")
            if r.get("lrn_statistics"):
                steps = [s["step"] for s in r["lrn_statistics"]]
                for layer, style in zip(LAYERS, ("-", ":")):
                    c.plot(steps, [s[layer]["mean"] for s in r["lrn_statistics"]], style, color=colour[arm],
                           label=f"{layer} seed {r['seed']}")
    a.set_xlabel("epochs")
    a.set_ylabel("training error (trailing mean)")
    a.grid(alpha=0.3)
    a.legend(fontsize=6)
    for i, arm in enumerate(per_arm):
        errs = [v["test_error"] for v in per_arm[arm].values() if "test_error" in v]
        b.scatter([i] * len(errs), errs, color=colour[arm])
        paper = CIFAR.lrn_test_error_with if ARMS[arm][0] else CIFAR.lrn_test_error_without
        b.scatter([i - 0.15], [paper], marker="*", color="grey", s=60, label="paper" if i == 0 else None)
    b.set_xticks(range(len(per_arm)))
    b.set_xticklabels([ARMS[arm][1] for arm in per_arm], fontsize=7)
    b.set_ylabel("test error")
    b.grid(alpha=0.3)
    b.legend(fontsize=6)
    c.set_xlabel("step")
    c.set_ylabel("mean α·Σa²/k (training batch)")
    c.set_yscale("log")
    c.grid(alpha=0.3)
    if c.get_legend_handles_labels()[0]:  # a run of the no-lrn arm alone has no statistic to draw
        c.legend(fontsize=6)
    fig.suptitle("§3.3 on CIFAR-10: four-layer CNN with / without LRN", fontsize=9)
    return plotting.save_figure(fig, path)
