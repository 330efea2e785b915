"""Experiment 4, ``patches-ensembles``: centre patch vs ten patches (§4.1), one network vs k averaged (§6).

``k_max`` networks of the ``cifar10`` preset that differ only in their seed;
each is evaluated on the held-out images with the centre patch and with the
ten patches (softmax averaged); ensembles average the members' ten-patch
probabilities (k = 2 and 5: members 0..k-1, and the mean over all seed windows
of size k among the trained networks is not taken -- the first k, as the
paper's "five similar CNNs").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from alexnet.experiments import common, plotting, stores, subruns, tables
from alexnet.paper import RESULTS

DESCRIPTION = "§4.1 / §6: centre vs ten patches, one network vs the average of k = 2 and 5"
SEEDS = {"quick": 2, "full": 5}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"train_images": 2560, "val_images": 500, "batch_size": 128, "max_steps": 150, "preset": "cifar10",
              "ks": [2, 5]},
    "full": {"train_images": 0, "val_images": 0, "batch_size": 128, "max_steps": 0, "preset": "cifar10", "ks": [2, 5]},
}


def _errors(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from alexnet.inference.scoring import topk_error_rates

    return topk_error_rates(probs, labels)


def run(ctx: common.Context, params: dict[str, Any]) -> dict[str, Any]:
    seeds = ctx.seed_list(SEEDS)
    common.start(ctx, seeds)
    base = stores.prepared_from_tree(ctx, "cifar10-32", "cifar10", 32)
    store = stores.derived_store(ctx, base, train=params["train_images"], val=params["val_images"], train_eval=100)
    members: list[dict[str, Any]] = []
    for seed in seeds:
        sub = f"net-seed{seed}"
        config = common.paper_config(ctx, params["preset"], store, seed, [f"optim.batch_size={params['batch_size']}"],
                                     max_steps=params["max_steps"])
        done = subruns.train_sub_run(ctx, sub, config)
        if done["status"] != "finished":
            continue
        subruns.evaluate_sub_run(ctx, sub, store, "val", ("centre", "ten"))
        folder = ctx.run_dir(sub) / "eval-val"
        members.append({"seed": seed, "centre": np.load(folder / "probs_centre.npy"),
                        "ten": np.load(folder / "probs_ten.npy"), "labels": np.load(folder / "labels.npy")})
    if not members:
        from alexnet.errors import UserError

        raise UserError("no member network finished training; see the runs' done.json")
    labels = members[0]["labels"]
    singles = [{"seed": m["seed"], "centre": _errors(m["centre"], labels), "ten": _errors(m["ten"], labels)}
               for m in members]
    rows = []
    c1 = [s["centre"][0] for s in singles]
    t1 = [s["ten"][0] for s in singles]
    c5 = [s["centre"][1] for s in singles]
    t5 = [s["ten"][1] for s in singles]
    rows.append(["1 network, centre patch", len(singles), tables.pct_pm(c1), tables.pct_pm(c5)])
    rows.append(["1 network, ten patches", len(singles), tables.pct_pm(t1), tables.pct_pm(t5)])
    ensembles: dict[str, Any] = {}
    for k in params["ks"]:
        if k > len(members):
            rows.append([f"average of {k} networks (ten patches)", 0, f"not run ({len(members)} networks)", "—"])
            continue
        for mode in ("centre", "ten"):
            avg = np.mean([m[mode] for m in members[:k]], axis=0)
            e1, e5 = _errors(avg, labels)
            ensembles[f"k{k}_{mode}"] = {"top1": e1, "top5": e5, "members": [m["seed"] for m in members[:k]]}
        e = ensembles[f"k{k}_ten"]
        rows.append([f"average of {k} networks (ten patches)", 1, tables.pct(e["top1"]), tables.pct(e["top5"])])
    paper_rows = (f"Paper (ImageNet): ten patches vs one: {RESULTS.ilsvrc2010_test_1crop.top1:g}% → "
                  f"{RESULTS.ilsvrc2010_test_10crop.top1:g}% top-1 (ILSVRC-2010 test); one CNN vs five: "
                  f"{RESULTS.ilsvrc2012_val_1cnn.top1:g}% → {RESULTS.ilsvrc2012_val_5cnn.top1:g}% top-1 "
                  f"(ILSVRC-2012 val).")
    table = (tables.md_table(["prediction", "ensembles / networks", f"top-1 error ({len(labels)} imgs)",
                              "top-5 error"], rows) + "\n\n" + paper_rows)
    plot = _plot(ctx.out / "patches-ensembles.png", c1, t1, ensembles, params["ks"])
    notes = [f"Members: the `{params['preset']}` preset, seeds {[m['seed'] for m in members]}; ensembles average "
             "the first k members' probabilities."]
    if params["max_steps"]:
        notes.append(f"Budget: {params['max_steps']} steps per network, {params['train_images'] or 'all'} "
                     "training images.")
    return common.finish(ctx, seeds=seeds, results={
        "singles": [{"seed": s["seed"], "centre_top1": s["centre"][0], "centre_top5": s["centre"][1],
                     "ten_top1": s["ten"][0], "ten_top5": s["ten"][1]} for s in singles],
        "ensembles": ensembles, "params": params, "images": int(len(labels))},
        table=table, plot=plot,
        paper={"ilsvrc2010_test_1crop": RESULTS.ilsvrc2010_test_1crop.__dict__,
               "ilsvrc2010_test_10crop": RESULTS.ilsvrc2010_test_10crop.__dict__,
               "ilsvrc2012_val_1cnn": RESULTS.ilsvrc2012_val_1cnn.__dict__,
               "ilsvrc2012_val_5cnn": RESULTS.ilsvrc2012_val_5cnn.__dict__}, notes=notes)


def _plot(path: Path, centre: list[float], ten: list[float], ensembles: dict[str, Any], ks: list[int]) -> Path:
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    names = ["1 net\ncentre", "1 net\nten"] + [f"{k} nets\nten" for k in ks if f"k{k}_ten" in ensembles]
    vals = [tables.mean_std(centre), tables.mean_std(ten)] + [(ensembles[f"k{k}_ten"]["top1"], 0.0)
                                                              for k in ks if f"k{k}_ten" in ensembles]
    ax.bar(range(len(names)), [v for v, _ in vals], yerr=[s for _, s in vals], capsize=3, color="tab:blue")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=7)
    ax.set_ylabel("top-1 error")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title("Ten patches and ensembles (CIFAR-10, cifar10 preset)", fontsize=9)
    return plotting.save_figure(fig, path)
