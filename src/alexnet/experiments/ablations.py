"""Experiment 3, ``ablations``: the paper's ablations with its network scaled to CIFAR-10 (preset ``cifar10``).

Each variant changes one thing against the baseline (the ``cifar10`` preset:
the paper's layer pattern at half width, 28x28 crops of 32x32 images, LRN,
overlapping pooling, dropout, PCA colour noise, two columns):

* ``pool2``: non-overlapping 2x2 stride-2 pooling instead of 3x3 stride 2 (§3.4);
* ``no-dropout``: no dropout in fc6/fc7 (§4.2) -- the train/test gap is reported;
* ``no-pca``: no PCA colour noise (§4.1);
* ``one-column``: one column with half the kernels in conv1-conv4 (§3.2);
* ``no-conv3``: a middle convolutional layer removed (§7).

Errors are top-1 with the centre patch, on held-out CIFAR-10 test images, and
on a fixed subset of training images (in eval mode) for the train/test gap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from alexnet.experiments import common, plotting, stores, subruns, tables
from alexnet.paper import DATA, POOL, RESULTS

DESCRIPTION = "§3.2-§4.2, §7 ablations on CIFAR-10 with the scaled network (pooling, dropout, PCA, columns, depth)"
SEEDS = {"quick": 1, "full": 3}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"train_images": 2560, "val_images": 500, "batch_size": 128, "max_steps": 30, "preset": "cifar10",
              "variants": ["baseline", "pool2", "no-dropout", "no-pca", "one-column", "no-conv3"]},
    "full": {"train_images": 0, "val_images": 0, "batch_size": 128, "max_steps": 0, "preset": "cifar10",
             "variants": ["baseline", "pool2", "no-dropout", "no-pca", "one-column", "no-conv3"]},
}
#: variant -> (config overrides, what it tests, the paper's change in top-1 error in points when it is applied)
ABLATIONS: dict[str, tuple[list[str], str, float | None]] = {
    "baseline": ([], "the cifar10 preset as is", None),
    "pool2": (['model.variants=["pool2"]'], "non-overlapping pooling 2/2 (§3.4)", POOL.gain_top1),
    "no-dropout": (['model.variants=["no-dropout"]'], "no dropout (§4.2)", None),
    "no-pca": (["data.pca=false"], "no PCA colour noise (§4.1)", DATA.pca_gain_top1),
    "one-column": (['model.variants=["one-column"]'], "one column, half the kernels (§3.2)",
                   RESULTS.two_columns_gain.top1),
    "no-conv3": (['model.variants=["no-conv3"]'], "conv3 removed (§7)", RESULTS.middle_layer_removed_loss_top1),
}


def run(ctx: common.Context, params: dict[str, Any]) -> dict[str, Any]:
    from alexnet.errors import UserError

    seeds = ctx.seed_list(SEEDS)
    common.start(ctx, seeds)
    for v in params["variants"]:
        if v not in ABLATIONS:
            raise UserError(f"variants: unknown ablation {v!r}; allowed: {', '.join(ABLATIONS)}", key="param")
    base = stores.prepared_from_tree(ctx, "cifar10-32", "cifar10", 32)
    store = stores.derived_store(ctx, base, train=params["train_images"], val=params["val_images"],
                                 train_eval=1000)
    per_run: list[dict[str, Any]] = []
    for seed in seeds:
        for v in params["variants"]:
            overrides = [f"optim.batch_size={params['batch_size']}", *ABLATIONS[v][0]]
            sub = f"{v}-seed{seed}"
            config = common.paper_config(ctx, params["preset"], store, seed, overrides, max_steps=params["max_steps"])
            done = subruns.train_sub_run(ctx, sub, config)
            if done["status"] != "finished":
                per_run.append({"variant": v, "seed": seed, "status": done["status"], "reason": done["reason"]})
                continue
            ev = subruns.evaluate_sub_run(ctx, sub, store, "val")
            tr = subruns.evaluate_sub_run(ctx, sub, store, "train_eval")
            per_run.append({"variant": v, "seed": seed, "status": "finished", "steps": done["steps"],
                            "test_error": ev["centre_top1_error"], "test_top5_error": ev["centre_top5_error"],
                            "train_error": tr["centre_top1_error"], "wall_seconds": done["wall_seconds"],
                            "test_images": ev["images"]})
    summary: dict[str, Any] = {}
    for v in params["variants"]:
        rs = [r for r in per_run if r["variant"] == v and r["status"] == "finished"]
        summary[v] = {"test": [r["test_error"] for r in rs], "train": [r["train_error"] for r in rs],
                      "gap": [r["test_error"] - r["train_error"] for r in rs], "failed": sum(
                          r["status"] != "finished" for r in per_run if r["variant"] == v)}
    base_mean = tables.mean_std(summary.get("baseline", {}).get("test", []))[0]
    rows = []
    for v in params["variants"]:
        s = summary[v]
        m = tables.mean_std(s["test"])[0]
        delta = m - base_mean if v != "baseline" else 0.0
        s["delta_vs_baseline"] = delta
        paper = ABLATIONS[v][2]
        paper_text = "—" if paper is None else f"+{paper:g} (ImageNet)"
        if v == "no-dropout":
            paper_text = "larger gap (\"substantial overfitting\")"
        rows.append([v, ABLATIONS[v][1], len(s["test"]) or f"0 ({s['failed']} failed)", tables.pct_pm(s["test"]),
                     tables.pct_pm(s["train"]), tables.pct_pm(s["gap"]),
                     "—" if v == "baseline" or np.isnan(delta) else f"{100 * delta:+.2f}", paper_text])
    n_test = next((r["test_images"] for r in per_run if "test_images" in r), 0)
    table = tables.md_table(["variant", "change", "runs", f"test top-1 error ({n_test} imgs)",
                             "train error (1000 imgs)", "gap test−train", "Δ vs baseline (points)",
                             "paper Δ (points)"], rows)
    plot = _plot(ctx.out / "ablations.png", summary)
    notes = ["Preset `cifar10`: width 0.5, fc 1024, 28x28 crops, fan-in init, batch 128, lr 0.01, momentum 0.9, "
             "weight decay 0.0005; errors with the centre patch.",
             "Paper deltas are ImageNet top-1 points (§3.2, §3.4, §4.1, §7) and are for orientation only."]
    if params["max_steps"]:
        notes.append(f"Budget: {params['max_steps']} steps per run (far from convergence; differences at this "
                     "budget mostly measure early training speed, not final accuracy).")
    if params["train_images"]:
        notes.append(f"Budget: a seeded subset of {params['train_images']} training images.")
    return common.finish(ctx, seeds=seeds, results={"summary": summary, "runs": per_run, "params": params},
                         table=table, plot=plot,
                         paper={v: ABLATIONS[v][2] for v in params["variants"]}, notes=notes)


def _plot(path: Path, summary: dict[str, Any]) -> Path:
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    names = list(summary)
    x = np.arange(len(names))
    test = [tables.mean_std(summary[n]["test"]) for n in names]
    train = [tables.mean_std(summary[n]["train"]) for n in names]
    ax.bar(x - 0.2, [m for m, _ in train], 0.4, yerr=[s for _, s in train], label="train (eval mode)",
           color="tab:green", capsize=2)
    ax.bar(x + 0.2, [m for m, _ in test], 0.4, yerr=[s for _, s in test], label="test", color="tab:blue", capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=7, rotation=15)
    ax.set_ylabel("top-1 error")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    ax.set_title("Ablations on CIFAR-10 (cifar10 preset)", fontsize=9)
    return plotting.save_figure(fig, path)
