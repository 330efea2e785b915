"""Experiment 1, ``relu-tanh``: Figure 1 (§3.1) on CIFAR-10.

The four-layer network of :mod:`alexnet.experiments.smallnet` with ReLU and
with tanh, no regularisation of any kind (no dropout, no weight decay, no data
augmentation, no LRN), trained on full 32x32 training images with plain SGD.
For each non-linearity the learning rate is chosen from a small sweep: every
(non-linearity, rate) pair is trained until its training error -- the mean of
the last ``window`` mini-batches, as cuda-convnet reported it -- reaches 25%
(or the step budget runs out), and the rate that got there in the fewest
iterations is kept ("chosen independently to make training as fast as
possible").  The result is the iterations each needed and their ratio
(paper: six times).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from alexnet.experiments import common, plotting, stores, tables
from alexnet.experiments.smallnet import SmallRun, cifar_tensors, train_small
from alexnet.paper import CIFAR

DESCRIPTION = (f"Figure 1: ReLU vs tanh, four-layer CNN on CIFAR-10, iterations to "
               f"{CIFAR.relu_tanh_target_train_error:.0%} training error")
SEEDS = {"quick": 1, "full": 1}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"train_images": 2560, "max_steps": 100, "window": 20, "relu_lrs": [0.01, 0.05],
              "tanh_lrs": [0.01, 0.05], "batch_size": 128, "init": "default"},
    "full": {"train_images": 0, "max_steps": 8000, "window": 100, "relu_lrs": [0.003, 0.01, 0.03, 0.1],
             "tanh_lrs": [0.003, 0.01, 0.03, 0.1], "batch_size": 128, "init": "default"},
}
ACTIVATIONS = ("relu", "tanh")


def run(ctx: common.Context, params: dict[str, Any]) -> dict[str, Any]:
    seeds = ctx.seed_list(SEEDS)
    common.start(ctx, seeds)
    target = CIFAR.relu_tanh_target_train_error
    base = stores.prepared_from_tree(ctx, "cifar10-32", "cifar10", 32)
    store = stores.derived_store(ctx, base, train=params["train_images"], val=1000, train_eval=1000)
    data = cifar_tensors(store, ("train",))
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        for act in ACTIVATIONS:
            for lr in params[f"{act}_lrs"]:
                sub = f"{act}-lr{lr:g}-seed{seed}"
                cfg = SmallRun(activation=act, lr=float(lr), steps=int(params["max_steps"]),
                               batch_size=int(params["batch_size"]), seed=seed, window=int(params["window"]),
                               stop_at_error=target, threads=ctx.threads, init=params["init"])
                ctx.runs += 1
                ctx.log(f"[{ctx.name}] {sub}")
                r = train_small(ctx.run_dir(sub), cfg, data["train"], log=ctx.log if ctx.progress else None)
                runs.append({"sub": sub, "activation": act, "lr": float(lr), "seed": seed, **r})
    # the best rate of each non-linearity: fewest iterations to the target (else lowest final error)
    def key(r: dict[str, Any]) -> tuple:
        reached = r["reached_step"] is not None
        return (not reached, r["reached_step"] if reached else 0, r["final_trailing_train_error"] or 9.9)

    best: dict[str, dict[str, Any]] = {}
    per_seed_ratio: list[float] = []
    for act in ACTIVATIONS:
        by_lr: dict[float, list[dict[str, Any]]] = {}
        for r in runs:
            if r["activation"] == act and not r["diverged"]:
                by_lr.setdefault(r["lr"], []).append(r)
        if not by_lr:
            continue
        lr_best = min(by_lr, key=lambda lr: key(_median_run(by_lr[lr])))
        best[act] = {"lr": lr_best, "runs": by_lr[lr_best]}
    summary: dict[str, Any] = {}
    for act, b in best.items():
        steps = [r["reached_step"] for r in b["runs"]]
        summary[act] = {
            "lr": b["lr"],
            "reached_steps": steps,
            "reached_epochs": [r["reached_epoch"] for r in b["runs"]],
            "all_reached": all(s is not None for s in steps),
            "max_steps": int(params["max_steps"]),
            "final_trailing_train_error": [r["final_trailing_train_error"] for r in b["runs"]],
            "seconds_per_step": float(np.mean([r["seconds_per_step"] for r in b["runs"]])),
        }
    ratio, ratio_kind = None, "not measured"
    if "relu" in summary and "tanh" in summary:
        for rr, tr in zip(best["relu"]["runs"], best["tanh"]["runs"]):
            if rr["reached_step"]:
                t = tr["reached_step"] if tr["reached_step"] else tr["steps"]
                per_seed_ratio.append(t / rr["reached_step"])
        if per_seed_ratio:
            ratio = float(np.mean(per_seed_ratio))
            ratio_kind = "measured" if summary["tanh"]["all_reached"] else "lower bound (tanh did not reach the target)"
    if per_seed_ratio and not summary.get("relu", {}).get("all_reached", False):
        ratio_kind = "partial"
    rows = []
    for act in ACTIVATIONS:
        if act not in summary:
            continue
        s = summary[act]
        reached = [x for x in s["reached_steps"] if x is not None]
        rows.append([act, f"{s['lr']:g}",
                     f"{np.mean(reached):.0f}" if s["all_reached"] else f"> {s['max_steps']} (not reached)",
                     f"{np.mean([e for e in s['reached_epochs'] if e is not None]):.2f}" if s["all_reached"] else "—",
                     tables.pct(float(np.mean(s["final_trailing_train_error"])))])
    table = (f"Iterations (batches of {params['batch_size']}) to {tables.pct(target, 0)} training error "
             f"(mean of the last {params['window']} mini-batches), best rate of each non-linearity:\n\n"
             + tables.md_table(["non-linearity", "learning rate", "iterations to target", "epochs to target",
                                "final train error"], rows)
             + f"\n\ntanh / ReLU iterations: **{'—' if ratio is None else f'{ratio:.2f}'}** ({ratio_kind}); "
             f"paper: {CIFAR.relu_tanh_speedup:g}x.\n\nLearning-rate sweep:\n\n"
             + tables.md_table(["run", "iterations to target", "final train error", "s/step"],
                               [[r["sub"], r["reached_step"] if r["reached_step"] else
                                 ("diverged" if r["diverged"] else "stuck at chance" if r.get("stuck_at_chance")
                                  else f"> {r['steps']}"),
                                 tables.pct(r["final_trailing_train_error"]), f"{r['seconds_per_step']:.3f}"]
                                for r in runs]))
    plot = _plot(ctx.out / "relu-tanh.png", runs, best, target)
    results = {"target_train_error": target, "ratio_tanh_over_relu": ratio, "ratio_kind": ratio_kind,
               "ratio_per_seed": per_seed_ratio, "best": summary, "params": params,
               "train_images": runs[0]["train_images"] if runs else 0,
               "sweep": [{k: r[k] for k in ("sub", "activation", "lr", "seed", "reached_step", "reached_epoch",
                                             "steps", "diverged", "final_trailing_train_error", "seconds_per_step",
                                             "wall_seconds")} for r in runs]}
    notes = ["Network: cuda-convnet layers-18pct shape, 3 conv (32, 32, 64 kernels of 5x5) + 1 fully-connected "
             "layer, max-pool 3/2, no LRN, no dropout, no weight decay, no augmentation (§3.1: no regularisation).",
             f"Initialisation: {params['init']} (default: PyTorch's fan-in uniform; cuda-convnet: layers-18pct's "
             "Gaussians, std 1e-4, 1e-2, 1e-2, 1e-1, biases 0), the same for both non-linearities.",
             "Training error = mean top-1 error of the last `window` training mini-batches (as cuda-convnet logged it)."]
    if params["train_images"]:
        notes.append(f"Trained on a seeded random subset of {params['train_images']} CIFAR-10 training images "
                     "(budget); the paper used all 50,000.")
    return common.finish(ctx, seeds=seeds, results=results, table=table, plot=plot,
                         paper={"relu_tanh_speedup": CIFAR.relu_tanh_speedup, "target_train_error": target},
                         notes=notes)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    reached = [r for r in runs if r["reached_step"] is not None]
    if len(reached) == len(runs):
        return sorted(runs, key=lambda r: r["reached_step"])[len(runs) // 2]
    return sorted(runs, key=lambda r: r["final_trailing_train_error"] or 9.9)[len(runs) // 2]


def _plot(path: Path, runs: list[dict[str, Any]], best: dict[str, dict[str, Any]], target: float) -> Path:
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    styles = {"relu": "-", "tanh": "--"}
    colours = {"relu": "tab:blue", "tanh": "tab:red"}
    for r in runs:
        is_best = r["activation"] in best and r["lr"] == best[r["activation"]]["lr"]
        curve = np.asarray(r["trailing_train_error"])
        epochs = (np.arange(len(curve)) * r["trailing_every"] + 1) / r["steps_per_epoch"]
        label = f"{'ReLU' if r['activation'] == 'relu' else 'tanh'} lr {r['lr']:g}" + (" (best)" if is_best else "")
        if is_best and r["seed"] != 0:
            label = None
        ax.plot(epochs, curve, styles[r["activation"]], color=colours[r["activation"]],
                alpha=1.0 if is_best else 0.25, linewidth=1.8 if is_best else 0.8, label=label)
    ax.axhline(target, color="grey", linewidth=0.8, linestyle=":")
    plotting.style_error_axes(ax, "Figure 1: four-layer CNN on CIFAR-10 (ReLU solid, tanh dashed)",
                            ylabel="training error rate")
    return plotting.save_figure(fig, path)
