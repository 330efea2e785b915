"""Experiment 2, ``lrn``: §3.3 on CIFAR-10, the four-layer network with and without response normalisation.

The network of :mod:`alexnet.experiments.smallnet` (ReLU) with the paper's
cross-map LRN (k=2, n=5, alpha=1e-4, beta=0.75) after pool1 and pool2 -- where
cuda-convnet's CIFAR-10 networks normalise -- or without it; everything else
equal: SGD with momentum 0.9, weight decay 0.0005, reflections and +-2-pixel
translations, the rate divided by 10 for the last 20% of the steps.  Several
seeds; the mean and spread of the test error over the 10,000 test images
(paper: 13% without, 11% with).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.experiments import common, plotting, stores, tables
from alexnet.experiments.smallnet import SmallRun, cifar_tensors, train_small
from alexnet.paper import CIFAR, LEARNING

DESCRIPTION = (f"§3.3: four-layer CNN on CIFAR-10 with and without LRN (paper: {CIFAR.lrn_test_error_with:.0%} vs "
               f"{CIFAR.lrn_test_error_without:.0%} test error)")
SEEDS = {"quick": 1, "full": 3}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"train_images": 2560, "test_images": 1000, "steps": 100, "lr": 0.02, "batch_size": 128},
    "full": {"train_images": 0, "test_images": 0, "steps": 20000, "lr": 0.02, "batch_size": 128},
}
VARIANTS = (("with LRN", True), ("without LRN", False))


def run(ctx: common.Context, params: dict[str, Any]) -> dict[str, Any]:
    seeds = ctx.seed_list(SEEDS)
    common.start(ctx, seeds)
    base = stores.prepared_from_tree(ctx, "cifar10-32", "cifar10", 32)
    store = stores.derived_store(ctx, base, train=params["train_images"], val=params["test_images"],
                                 train_eval=1000)
    data = cifar_tensors(store, ("train", "val", "train_eval"))
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        for label, lrn in VARIANTS:
            sub = f"{'lrn' if lrn else 'no-lrn'}-seed{seed}"
            cfg = SmallRun(activation="relu", lrn=lrn, lr=float(params["lr"]), steps=int(params["steps"]),
                           batch_size=int(params["batch_size"]), weight_decay=LEARNING.weight_decay, augment=True,
                           seed=seed, lr_drop_at=0.8, threads=ctx.threads)
            ctx.runs += 1
            ctx.log(f"[{ctx.name}] {sub}")
            r = train_small(ctx.run_dir(sub), cfg, data["train"], data["val"], log=ctx.log if ctx.progress else None)
            if "train_eval_error" not in r and not r["diverged"]:
                import torch

                from alexnet.experiments.smallnet import FourLayerNet, error_rate

                model = FourLayerNet("relu", lrn, int(data["train"][1].max()) + 1)
                model.load_state_dict(torch.load(ctx.run_dir(sub) / "model.pt", weights_only=True))
                r["train_eval_error"] = error_rate(model, *data["train_eval"])
                (ctx.run_dir(sub) / "result.json").write_text(json.dumps(r, indent=2))
            runs.append({"sub": sub, "variant": label, "lrn": lrn, "seed": seed, **r})
    rows, summary = [], {}
    for label, lrn in VARIANTS:
        rs = [r for r in runs if r["lrn"] == lrn and not r["diverged"]]
        test = [r["test_error"] for r in rs]
        train = [r.get("train_eval_error") for r in rs]
        paper = CIFAR.lrn_test_error_with if lrn else CIFAR.lrn_test_error_without
        m, s = tables.mean_std(test)
        summary[label] = {"test_errors": test, "mean": m, "std": s, "train_errors": train, "paper": paper,
                          "seeds": [r["seed"] for r in rs]}
        rows.append([label, len(rs), tables.pct_pm(test), f"{100 * min(test):.2f}–{100 * max(test):.2f}%"
                     if test else "—", tables.pct_pm(train), tables.pct(paper, 0)])
    gain = summary["without LRN"]["mean"] - summary["with LRN"]["mean"]
    paper_gain = CIFAR.lrn_test_error_without - CIFAR.lrn_test_error_with
    n_test = runs[0].get("test_images", 0) if runs else 0
    table = (tables.md_table(["network", "seeds", f"test error (mean ± sd, {n_test} images)", "range",
                              "train error (1000 imgs)", "paper"], rows)
             + f"\n\nLRN gain: **{100 * gain:.2f} points** (paper: {100 * paper_gain:.0f} points).")
    plot = _plot(ctx.out / "lrn.png", runs, summary)
    notes = ["Network: cuda-convnet layers-18pct shape (3 conv 32-32-64 of 5x5 + 1 fc), ReLU, max-pool 3/2; "
             "LRN = the paper's cross-map formula after pool1 and pool2.",
             f"{params['steps']} steps of batch {params['batch_size']}, lr {params['lr']} (÷10 for the last 20%), "
             f"momentum {LEARNING.momentum}, weight decay {LEARNING.weight_decay}, flips and ±2-pixel translations."]
    if params["train_images"]:
        notes.append(f"Budget: a seeded subset of {params['train_images']} training images.")
    if params["test_images"]:
        notes.append(f"Budget: a seeded subset of {params['test_images']} test images.")
    return common.finish(ctx, seeds=seeds, results={"summary": summary, "lrn_gain": gain, "params": params,
                                                    "runs": [{k: r.get(k) for k in ("sub", "lrn", "seed",
                                                              "test_error", "train_eval_error", "steps",
                                                              "wall_seconds", "diverged")} for r in runs]},
                         table=table, plot=plot,
                         paper={"lrn_test_error_with": CIFAR.lrn_test_error_with,
                                "lrn_test_error_without": CIFAR.lrn_test_error_without},
                         notes=notes)


def _plot(path: Path, runs: list[dict[str, Any]], summary: dict[str, Any]) -> Path:
    plt = plotting.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2), gridspec_kw={"width_ratios": [2, 1]})
    for r in runs:
        curve = np.asarray(r["trailing_train_error"])
        x = (np.arange(len(curve)) * r["trailing_every"] + 1) / r["steps_per_epoch"]
        a.plot(x, curve, "-" if r["lrn"] else "--", color="tab:blue" if r["lrn"] else "tab:orange", linewidth=1,
               label=f"{r['variant']} seed {r['seed']}")
    a.set_xlabel("epochs")
    a.set_ylabel("training error (trailing mean)")
    a.grid(alpha=0.3)
    a.legend(fontsize=6)
    for i, (label, s) in enumerate(summary.items()):
        b.scatter([i] * len(s["test_errors"]), s["test_errors"], color="tab:blue" if i == 0 else "tab:orange")
        b.errorbar([i + 0.15], [s["mean"]], yerr=[s["std"]], fmt="o", color="black", capsize=3)
        b.scatter([i - 0.15], [s["paper"]], marker="*", color="grey", s=60, label="paper" if i == 0 else None)
    b.set_xticks(range(len(summary)))
    b.set_xticklabels(list(summary), fontsize=7)
    b.set_ylabel("test error")
    b.grid(alpha=0.3)
    b.legend(fontsize=6)
    fig.suptitle("§3.3 on CIFAR-10: four-layer CNN with / without LRN", fontsize=9)
    return plotting.save_figure(fig, path)
