"""Experiment 1, ``relu-tanh``: Figure 1 (§3.1), ReLU vs tanh in the four-layer CIFAR-10 network.

The network of :mod:`alexnet.experiments.smallnet` without regularisation,
trained on the CIFAR-10 training images (all 50,000 in the full budget) with
plain SGD.  The measurement: iterations until the training error -- the mean of
the last ``window`` mini-batches (50), as cuda-convnet reported it, not one
batch -- reaches 25%.

Rates "chosen independently to make training as fast as possible": for each
arm and non-linearity, a sweep on seed 0 (:func:`alexnet.experiments.sweep.bracketing_sweep`)
ranks each rate by the iterations it needed (a rate that never reached 25% ranks
after every one that did, by its final training error; a diverged one last) and
extends itself, ``rate_factor`` times beyond the edge, while the best rate is the
lowest or the highest tried, up to ``max_extensions`` rates; the results say
whether the best is interior.  A sweep point that has not reached 25% by the step
at which the fastest rate tried before it did stops there: it cannot be the
fastest, so the sweep chooses the same rate as with every point run to
``max_steps``, without running the slow rates to the cap.  The rate is chosen on
training error, the paper's own criterion.  The other seeds then train at that rate.

Arms (``--param arms=paper,modern``): ``paper`` -- §2's input scale (0-255 minus
the mean image) and layers-18pct's Gaussian initialisation (the 2012 cuda-convnet
configuration); ``modern`` -- inputs divided by their global standard deviation
and PyTorch's fan-in initialisation.  Results: every sweep point, the chosen
rates, per-seed iterations to 25% and the ratio tanh / ReLU per seed (paper:
six times), in ``record.json`` (:mod:`alexnet.experiments.record`), and a plot
like Figure 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from alexnet.experiments import common, plotting, record, stores
from alexnet.experiments.smallnet import SmallRun, cifar_tensors, train_small
from alexnet.experiments.sweep import INTERIOR, bracketing_sweep
from alexnet.paper import CIFAR

DESCRIPTION = (f"Figure 1: ReLU vs tanh, four-layer CNN on CIFAR-10, iterations to "
               f"{CIFAR.relu_tanh_target_train_error:.0%} training error (rate sweeps that bracket the fastest)")
SEEDS = {"quick": 1, "full": 3}
#: a sub-run is its result.json alone: ``--keep`` can carry finished ones to a later session (common.keep_finished)
KEEPS_SUB_RUNS = True
#: ``--param arms=…`` picks sub-runs (named by arm), it changes none: sessions may keep different arms in one folder
KEEP_NEUTRAL_PARAMS = ("arms",)
#: arm -> (input scale, initialisation, label)
ARMS: dict[str, tuple[str, str, str]] = {
    "paper": ("raw", "cuda-convnet", "paper's conditions (0-255 inputs, layers-18pct init)"),
    "modern": ("std", "default", "modern (inputs / std, fan-in init)"),
}
ACTIVATIONS = ("relu", "tanh")
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"train_images": 2560, "max_steps": 150, "window": 20, "arms": "paper,modern",
              "paper_lrs": [0.0003, 0.001, 0.003], "modern_lrs": [0.01, 0.03, 0.1], "rate_factor": 3.0,
              "max_extensions": 1, "batch_size": 128, "give_up_after": 0},
    "full": {"train_images": 0, "max_steps": 20000, "window": 50, "arms": "paper,modern",
             "paper_lrs": [0.0001, 0.0003, 0.001, 0.003], "modern_lrs": [0.003, 0.01, 0.03, 0.1],
             "rate_factor": 3.0, "max_extensions": 4, "batch_size": 128, "give_up_after": 1000},
}


def rank(r: dict[str, Any]) -> tuple[int, float]:
    """A sub-run's place in a sweep, lower is faster: (0, iterations) if it reached the target,
    (1, final trailing error) if not, (2, 0) if it diverged."""
    if r["diverged"]:
        return (2, 0.0)
    if r["reached_step"] is not None:
        return (0, float(r["reached_step"]))
    return (1, float(r["final_trailing_train_error"] if r["final_trailing_train_error"] is not None else 1.0))


def run(ctx: common.Context, params: dict[str, Any]) -> dict[str, Any]:
    seeds = ctx.seed_list(SEEDS)
    arms = common.names_of(params["arms"], ARMS, "arms", "arm")
    common.start(ctx, seeds)
    base = stores.prepared_from_tree(ctx, "cifar10-32", "cifar10", 32)
    store = stores.derived_store(ctx, base, train=params["train_images"], val=1, train_eval=1) \
        if params["train_images"] else base
    doc_arms: dict[str, Any] = {}
    sweeps: dict[str, Any] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        scale, init, _ = ARMS[arm]
        data = cifar_tensors(store, ("train",), scale=scale)["train"]
        for act in ACTIVATIONS:
            tried: dict[float, dict[str, Any]] = {}  # lr -> seed 0's run

            def score(lr: float, act: str = act, tried: dict[float, dict[str, Any]] = tried) -> tuple[int, float]:
                # a rate that has not reached the target by the step at which the fastest so far did cannot be
                # the fastest: it stops there (the sweep's answer is the same, at a fraction of the steps)
                fastest = min((r["reached_step"] for r in tried.values() if r["reached_step"] is not None), default=0)
                tried[lr] = _train(ctx, params, data, arm, act, lr, seeds[0], slower_than=fastest)
                return rank(tried[lr])

            s = bracketing_sweep(list(params[f"{arm}_lrs"]), score, factor=params["rate_factor"],
                                 max_extensions=params["max_extensions"])
            points = [_point(tried[lr]) for lr in s["scores"]]
            sweeps[f"{arm}/{act}"] = {"points": points, **{k: s[k] for k in ("best", "status", "extensions",
                                                                                 "range")}}
            # seed 0 at the best rate is its sweep point (which reached the target, or ran to max_steps)
            runs = [tried[s["best"]] if seed == seeds[0] else _train(ctx, params, data, arm, act, s["best"], seed)
                    for seed in seeds]
            curves[f"{arm}/{act}"] = runs
            doc_arms[f"{arm}/{act}"] = {
                "label": f"{arm}: {'ReLU' if act == 'relu' else 'tanh'}, lr {s['best']:g}"
                         + ("" if s["status"] == INTERIOR else " (not bracketed)"),
                "per_seed": {str(r["seed"]): _values(r) for r in runs}}
        doc_arms[f"{arm}/ratio"] = {"label": f"{arm}: tanh / ReLU", "per_seed": _ratios(doc_arms, arm, seeds)}
    doc = _record(ctx, seeds, params, arms, doc_arms, sweeps, store)
    record.write(doc, ctx.out / "record.json")
    plot = _plot(ctx.out / "relu-tanh.png", curves, arms)
    return common.finish(ctx, seeds=seeds, results={"arms": doc_arms, "sweeps": sweeps, "params": params,
                                                    "target_train_error": CIFAR.relu_tanh_target_train_error},
                         table=record.render(doc), plot=plot,
                         paper={"relu_tanh_speedup": CIFAR.relu_tanh_speedup,
                                "target_train_error": CIFAR.relu_tanh_target_train_error},
                         notes=doc["notes"])


def _train(ctx: common.Context, params: dict[str, Any], data: Any, arm: str, act: str, lr: float,
           seed: int, slower_than: int = 0) -> dict[str, Any]:
    """One sub-run; ``slower_than``: stop at that step if the target is not reached by then (0: at max_steps)."""
    sub = f"{arm}-{act}-lr{lr:g}-seed{seed}"
    cfg = SmallRun(activation=act, lr=float(lr), steps=int(params["max_steps"]), batch_size=int(params["batch_size"]),
                   seed=seed, window=int(params["window"]), stop_at_error=CIFAR.relu_tanh_target_train_error,
                   threads=ctx.threads, init=ARMS[arm][1], give_up_after=int(params["give_up_after"]),
                   slower_than=int(slower_than))
    ctx.runs += 1
    with common.kept_sub_run(ctx, sub):
        r = train_small(ctx.run_dir(sub), cfg, data, log=ctx.log if ctx.progress else None)
    return {"sub": sub, "arm": arm, "activation": act, "lr": float(lr), "seed": seed, **r}


def _point(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r.get(k) for k in ("lr", "reached_step", "reached_epoch", "steps", "diverged", "stuck_at_chance",
                                  "final_trailing_train_error", "seconds_per_step", "wall_seconds")} | {
        "stopped_slower": bool(r.get("stopped_slower"))}


def _values(r: dict[str, Any]) -> dict[str, Any]:
    return {"iterations_to_target": r["reached_step"], "epochs_to_target": r["reached_epoch"], "lr": r["lr"],
            "reached": r["reached_step"] is not None, "steps": r["steps"], "diverged": r["diverged"],
            "final_trailing_train_error": r["final_trailing_train_error"], "train_images": r["train_images"],
            "seconds_per_step": r["seconds_per_step"], "wall_seconds": r["wall_seconds"]}


def _ratios(doc_arms: dict[str, Any], arm: str, seeds: list[int]) -> dict[str, Any]:
    """Per seed: tanh's iterations over ReLU's (same seed); when tanh did not reach the target, the
    steps it ran over ReLU's iterations is a lower bound (recorded apart, not as a ratio)."""
    out: dict[str, Any] = {}
    for seed in seeds:
        relu, tanh = doc_arms[f"{arm}/relu"]["per_seed"][str(seed)], doc_arms[f"{arm}/tanh"]["per_seed"][str(seed)]
        v: dict[str, Any] = {"ratio_tanh_over_relu": None}
        if relu["reached"] and tanh["reached"]:
            v["ratio_tanh_over_relu"] = tanh["iterations_to_target"] / relu["iterations_to_target"]
        elif relu["reached"] and not tanh["diverged"]:
            v["ratio_lower_bound"] = tanh["steps"] / relu["iterations_to_target"]
        out[str(seed)] = v
    return out


def point_text(p: dict[str, Any]) -> str:
    """A sweep point in the notes: its iterations to the target, "diverged", or "> steps (final error)" with why
    it stopped short of max_steps (slower than the fastest rate so far, or its loss still at chance)."""
    if p["diverged"]:
        return "diverged"
    if p["reached_step"] is not None:
        return str(p["reached_step"])
    why = (", stopped: slower than the fastest so far" if p.get("stopped_slower")
           else ", gave up: loss still at chance" if p.get("stuck_at_chance") else "")
    return f"> {p['steps']} ({100 * p['final_trailing_train_error']:.1f}%{why})"


def _record(ctx: common.Context, seeds: list[int], params: dict[str, Any], arms: list[str],
            doc_arms: dict[str, Any], sweeps: dict[str, Any], store: Path) -> dict[str, Any]:

    target = CIFAR.relu_tanh_target_train_error
    notes = [f"Budget `{ctx.budget}`: {params}.",
             f"Training error = mean top-1 error of the last {params['window']} training mini-batches of "
             f"{params['batch_size']}; the target is {target:.0%} (§3.1). No weight decay, dropout or augmentation.",
             f"Training images: {doc_arms[f'{arms[0]}/relu']['per_seed'][str(seeds[0])]['train_images']} "
             f"(store {store}).",
             "— in an iterations cell: no seed of that row reached the target within max_steps.",
             "Rates chosen on seed 0's training error (the paper's criterion: 'as fast as possible'); a sweep "
             f"extends by ×/÷{params['rate_factor']:g} while its best rate is at an edge, at most "
             f"{params['max_extensions']} times. A sweep point stops at the step at which the fastest rate tried "
             "before it reached the target, if it has not reached it by then (it cannot be the fastest)."]
    for key, s in sweeps.items():
        pts = ", ".join(f"{p['lr']:g} → {point_text(p)}" for p in s["points"])
        notes.append(f"Sweep {key}: {pts}; best {s['best']:g} in [{s['range'][0]:g}, {s['range'][1]:g}]: "
                     f"{s['status']}.")
    for arm in arms:
        bounds = [v["ratio_lower_bound"] for v in doc_arms[f"{arm}/ratio"]["per_seed"].values()
                  if "ratio_lower_bound" in v]
        if bounds:
            notes.append(f"{arm}: tanh did not reach {target:.0%} in {len(bounds)} seed(s); ratio at least "
                         + ", ".join(f"{b:.2f}" for b in bounds) + " there (not in the mean).")
    return {
        "name": "relu-tanh",
        "question": "How many times fewer iterations does the four-layer CIFAR-10 network need to reach 25% "
                    "training error with ReLUs than with tanh units, each at its fastest rate (Figure 1)?",
        **common.record_head(ctx, seeds),
        "arms": doc_arms,
        "sweeps": sweeps,
        "table": {"columns": [
            {"metric": "iterations_to_target", "label": f"iterations to {target:.0%}", "format": "int",
             "missing": "—"},
            {"metric": "epochs_to_target", "label": "epochs", "format": "num", "missing": "—"},
            {"metric": "ratio_tanh_over_relu", "label": "tanh / ReLU", "format": "num", "missing": "—"}],
            "rows": list(doc_arms),
            "reference": [{"label": "paper (Figure 1)", "values": {"ratio_tanh_over_relu": CIFAR.relu_tanh_speedup}}]},
        "verdicts": [{"claim": f"Figure 1, {arm}: ReLU reaches {target:.0%} in fewer iterations", "a": f"{arm}/relu",
                      "b": f"{arm}/tanh", "metric": "iterations_to_target"} for arm in arms],
        "notes": notes,
    }


def _plot(path: Path, curves: dict[str, list[dict[str, Any]]], arms: list[str]) -> Path:
    """Figure 1: training error against epochs at each non-linearity's chosen rate, one panel per arm."""
    plt = plotting.pyplot()
    fig, axes = plt.subplots(1, len(arms), figsize=(5.5 * len(arms), 3.6), squeeze=False)
    for ax, arm in zip(axes[0], arms):
        for act, style, colour in (("relu", "-", "tab:blue"), ("tanh", "--", "tab:red")):
            for r in curves[f"{arm}/{act}"]:
                curve = np.asarray(r["trailing_train_error"])
                epochs = (np.arange(len(curve)) * r["trailing_every"] + 1) / r["steps_per_epoch"]
                ax.plot(epochs, curve, style, color=colour, linewidth=1.2, alpha=0.8,
                        label=f"{'ReLU' if act == 'relu' else 'tanh'} lr {r['lr']:g}" if r["seed"] == 0 else None)
        ax.axhline(CIFAR.relu_tanh_target_train_error, color="grey", linewidth=0.8, linestyle=":")
        plotting.style_error_axes(ax, f"Figure 1, {ARMS[arm][2]}", ylabel="training error rate")
    return plotting.save_figure(fig, path)
