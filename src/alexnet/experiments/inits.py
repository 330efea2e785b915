"""Experiment ``inits``: how fast each initialisation leaves chance, and why (the signal at step 0).

For each data set (Imagenette at 128 px with the ``imagenette-128`` preset's network,
CIFAR-10 at 28 px with the ``cifar10`` preset's) and each initialisation (§5's
``paper``; the ``code2012`` reading, std 0.03 in conv3-conv5; ``fan-in``;
``he-scaled``), train with the preset's optimiser but no warm-up and a cap of
``max_steps`` steps, and record the first logged step whose mean loss is below
0.9 · ln C ("leaves chance"), the loss there and at the cap, and the signal report
at initialisation (loss, logits std, the image's share of the logits).
"""

from __future__ import annotations

import math
from typing import Any

from alexnet.experiments import common, record, stores, subruns

DESCRIPTION = "steps to leave chance (loss < 0.9 ln C) for each initialisation, on Imagenette-128 and CIFAR-10"
SEEDS = {"quick": 1, "full": 1}
LEAVE_CHANCE = 0.9  # a loss below 0.9 * ln C has left chance (the project's threshold, not the paper's)
#: init -> config overrides (the code2012 reading brings its own initialisation)
INITS: dict[str, list[str]] = {
    "paper": ['model.init="paper"'],
    "code2012": ['model.init="paper"', 'model.reading="code2012"'],
    "fan-in": ['model.init="fan-in"'],
    "he-scaled": ['model.init="he-scaled"'],
}
#: dataset -> (store name, source folder under data_root, prepare size, holdout per class, preset)
DATASETS: dict[str, tuple[str, str, int, int, str]] = {
    "imagenette-128": ("imagenette-146", "imagenette-224", 146, 50, "imagenette-128"),
    "cifar10": ("cifar10-32", "cifar10", 32, 100, "cifar10"),
}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"max_steps": 12, "log_every": 2, "datasets": "cifar10", "inits": "paper,he-scaled",
              "batch_size": 16},
    "full": {"max_steps": 300, "log_every": 10, "datasets": "imagenette-128,cifar10",
             "inits": "paper,code2012,fan-in,he-scaled", "batch_size": 0},
}


def left_chance(history: list[dict[str, Any]], num_classes: int) -> tuple[int | None, float | None]:
    """The first logged step whose mean loss is below 0.9 ln C, and that loss (None, None if never)."""
    threshold = LEAVE_CHANCE * math.log(num_classes)
    for h in history:
        if h.get("kind") == "step" and h["loss"] < threshold:
            return int(h["step"]), float(h["loss"])
    return None, None


def run(ctx: common.Context, params: dict[str, Any]) -> dict[str, Any]:
    from alexnet.data.store import Store

    seeds = ctx.seed_list(SEEDS)
    datasets = common.names_of(params["datasets"], DATASETS, "datasets")
    inits = common.names_of(params["inits"], INITS, "inits")
    common.start(ctx, seeds)
    arms: dict[str, dict[str, Any]] = {}
    for dataset in datasets:
        name, folder, size, holdout, preset = DATASETS[dataset]
        store = stores.prepared_from_tree(ctx, name, folder, size, holdout=holdout)
        s = Store(store)
        for init in inits:
            key = f"{dataset}/{init}"
            arms[key] = {"label": f"{dataset}, {init}", "per_seed": {}}
            for seed in seeds:
                overrides = [*INITS[init], "schedule.warmup_steps=0", f"run.log_every={params['log_every']}",
                             "run.health_window=0"]
                if params["batch_size"]:
                    overrides.append(f"optim.batch_size={params['batch_size']}")
                config = common.paper_config(ctx, preset, store, seed, overrides, max_steps=params["max_steps"])
                config.run.log_every = params["log_every"]
                config.data.crop = min(config.data.crop, s.image_size)
                sub = f"{dataset}-{init}-seed{seed}"
                done = subruns.train_sub_run(ctx, sub, config)
                history = subruns.history(ctx.run_dir(sub))
                step, loss = left_chance(history, s.num_classes)
                steps = [h for h in history if h.get("kind") == "step"]
                signal = next((h for h in history if h.get("event") == "signal"), {})
                arms[key]["per_seed"][str(seed)] = {
                    "steps_to_leave_chance": step, "loss_when_left": loss,
                    "left_within_cap": step is not None, "cap": params["max_steps"],
                    "loss_at_cap": steps[-1]["loss"] if steps else None,
                    "loss_at_init": signal.get("loss"), "logits_std_at_init": signal.get("logits_std"),
                    "logits_signal_at_init": signal.get("logits_signal"), "status": done["status"],
                    "reason": done["reason"]}
    doc = {
        "name": "inits",
        "question": "How many steps does each initialisation need to leave chance (loss < 0.9 ln C), and how much "
                    "of the image reaches the logits at step 0?",
        **common.record_head(ctx, seeds),
        "arms": arms,
        "table": {"columns": [
            {"metric": "steps_to_leave_chance", "label": f"steps to loss < 0.9 ln C (cap {params['max_steps']})",
             "format": "int", "missing": f"not within {params['max_steps']}"},
            {"metric": "loss_at_cap", "label": "loss at the cap", "format": "num"},
            {"metric": "loss_at_init", "label": "loss at step 0", "format": "num"},
            {"metric": "logits_signal_at_init", "label": "image's share of the logits at step 0", "format": "num"}],
            "rows": list(arms)},
        "notes": [f"Budget `{ctx.budget}`: {params}. No warm-up; the preset's optimiser and rate."],
    }
    record.write(doc, ctx.out / "record.json")
    table = record.render(doc)
    return common.finish(ctx, seeds=seeds, results={"arms": arms, "params": params}, table=table, plot=None,
                         paper={}, notes=doc["notes"])
