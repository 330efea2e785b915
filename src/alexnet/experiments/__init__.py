"""Named, seeded, resumable experiments reproducing the paper's claims (``alexnet experiment NAME``).

Each experiment is a module with ``DESCRIPTION``, ``SEEDS`` (default seed count
per budget), ``BUDGETS`` (``quick`` and ``full`` parameter dicts) and
``run(ctx, params)``; :data:`REGISTRY` maps its command-line name to the module.
See :mod:`alexnet.experiments.common` for the run directory layout.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from alexnet.config import parse_assignment
from alexnet.errors import UserError, choice_error

#: Budgets every experiment offers: ``quick`` (minutes on a CPU) and ``full``.
BUDGETS: tuple[str, ...] = ("quick", "full")

#: command-line name -> module
REGISTRY: dict[str, str] = {
    "relu-tanh": "alexnet.experiments.relu_tanh",
    "lrn": "alexnet.experiments.lrn",
    "ablations": "alexnet.experiments.ablations",
    "patches-ensembles": "alexnet.experiments.patches_ensembles",
    "imagenette": "alexnet.experiments.imagenette",
    "imagenette-128": "alexnet.experiments.imagenette128",
    "inits": "alexnet.experiments.inits",
    "fashion-mnist": "alexnet.experiments.fashion_mnist",
    "demo": "alexnet.experiments.demo",
    "retrieval": "alexnet.experiments.retrieval",
}


def module(name: str) -> ModuleType:
    if name not in REGISTRY:
        raise choice_error("experiment", name, REGISTRY)
    return importlib.import_module(REGISTRY[name])


def parameters(name: str, budget: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """The budget's parameters with ``KEY=VALUE`` overrides (TOML values), checked against the known keys."""
    if budget not in BUDGETS:
        raise choice_error("budget", budget, BUDGETS)
    params = dict(module(name).BUDGETS[budget])
    for text in overrides or []:
        key, value = parse_assignment(text, key="param", example="max_steps=500")
        if key not in params:
            raise UserError(f"{key}: unknown key for {name}; valid keys: {', '.join(sorted(params))}", key="param")
        default = params[key]
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        if type(value) is not type(default):
            raise UserError(f"{key}: must be {type(default).__name__} like {default!r}, got {value!r}", key="param")
        params[key] = value
    return params


def run_experiment(name: str, *, budget: str = "quick", out: str | Path | None = None, seeds: int | None = None,
                   params: list[str] | None = None, **context: Any) -> dict[str, Any]:
    """Run (or continue) experiment ``name``; returns its results document (also written to OUT/results.json)."""
    from alexnet.experiments.common import Context

    mod = module(name)
    p = parameters(name, budget, params)
    out = Path(out) if out is not None else Path("runs") / "experiments" / f"{name}-{budget}"
    ctx = Context(name=name, out=out, budget=budget, seeds=seeds, **context)
    if ctx.keep is not None:
        from alexnet.experiments.common import open_keep

        if not getattr(mod, "KEEPS_SUB_RUNS", False):
            raise UserError(f"{name} cannot keep its sub-runs in a folder; experiments that can: "
                            f"{', '.join(n for n in REGISTRY if getattr(module(n), 'KEEPS_SUB_RUNS', False))}",
                            key="keep")
        open_keep(ctx, p, getattr(mod, "KEEP_NEUTRAL_PARAMS", ()))
    return mod.run(ctx, p)
