"""One self-contained HTML page per run (images embedded as base64 PNG data URIs).

Sections (each a ``<section id=...>``; :data:`SECTIONS`):

* ``config``      -- the reading, the resolved configuration (RUN/config.toml) and run.json
* ``curves``      -- training and validation error and the learning rate ε over epochs (metrics.jsonl)
* ``errors``      -- the final table of errors, centre patch and ten patches (RUN/eval/eval.json,
                     else computed with :func:`alexnet.inference.evaluate.evaluate_checkpoint` when the store is there)
* ``kernels``     -- conv1's kernels (Figure 3) and each column's colour specificity
* ``predictions`` -- top-5 predictions for a few validation images (Figure 4 left)
* ``neighbours``  -- nearest training images in fc7 space for a few queries (Figure 4 right)

A section whose inputs are missing (no store, no epochs yet) says so in words;
it never embeds an empty or broken image.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.errors import UserError
from alexnet.paper import RETRIEVAL

SECTIONS: tuple[tuple[str, str], ...] = (
    ("config", "Configuration and reading"),
    ("curves", "Training and validation error, learning rate"),
    ("errors", "Final errors (§4.1, Table 2)"),
    ("kernels", "conv1 kernels (Figure 3)"),
    ("predictions", "Top-5 predictions (Figure 4, left)"),
    ("neighbours", "Nearest neighbours in fc7 space (Figure 4, right)"),
)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{data_uri(png)}">'


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Context:
    """What the sections share: the run folder, the opened run, its store (or why there is none)."""

    run: Path
    trained: Any = None  # alexnet.inference.trained.TrainedRun
    store: Any = None
    store_problem: str = ""
    val_split: str | None = None

    @property
    def model(self) -> Any:
        return self.trained.model

    @property
    def ckpt(self) -> dict[str, Any]:
        return self.trained.checkpoint


def _open_store(ctx: Context, store_path: str | None) -> None:
    from alexnet.data.store import Store

    path = store_path or ctx.trained.config.get("data", {}).get("store", "")
    if not path:
        ctx.store_problem = "the run records no store; name one"
        return
    try:
        ctx.store = Store(path)
        ctx.val_split = ctx.store.evaluation_split()
    except UserError as err:
        ctx.store_problem = f"the store is not available ({err})"


# --------------------------------------------------------------------------- sections


def section_config(ctx: Context) -> str:
    parts = []
    info_path = ctx.run / "run.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    spec = ctx.model.spec
    rows = [["architecture", spec.arch], ["reading", spec.reading], ["variants", ", ".join(spec.variants) or "none"],
            ["input size", spec.input_size], ["width", spec.width], ["fc units", spec.fc_units],
            ["classes", spec.num_classes], ["columns", spec.columns], ["checkpoint", ctx.ckpt.get("path", "")]]
    for key in ("seed", "world_size", "store"):
        if key in info:
            rows.append([key, info[key]])
    source = ctx.trained.source
    if source:  # imported weights (alexnet import)
        rows.append(["weights", f"{source.get('weights', '')}: {source.get('file', '')} "
                                f"(sha256 {source.get('sha256', '')})"])
    rows.append(["inputs", ctx.trained.preprocessing])
    parts.append(html_table(["", ""], rows))
    cfg = ctx.run / "config.toml"
    parts.append(pre(cfg.read_text()) if cfg.is_file() else note("no config.toml in the run directory"))
    if info:
        parts.append("<details><summary>run.json</summary>" + pre(json.dumps(info, indent=2)) + "</details>")
    return "".join(parts)


def section_curves(ctx: Context) -> str:
    from alexnet.probes.plots import curves
    from alexnet.training.metrics import read_history

    epochs = [r for r in read_history(ctx.run) if r.get("kind") == "epoch"]
    if not epochs:
        return note("no finished epoch in metrics.jsonl yet")
    x = np.array([r["epoch"] for r in epochs])
    keys = [k for k in ("train_top1_error", "val_top1_error", "train_top5_error", "val_top5_error")
            if all(k in r for r in epochs)]
    series = {k.replace("_", " "): np.array([r[k] for r in epochs]) for k in keys}
    out = []
    if series:
        out.append(img(curves(x, series, ylabel="error"), "error curves"))
    if all("lr" in r for r in epochs):
        out.append(img(curves(x, {"ε": np.array([r["lr"] for r in epochs])}, ylabel="learning rate ε", log=True),
                       "learning rate"))
    last = epochs[-1]
    out.append(html_table(["epoch", *keys, "lr"], [[last["epoch"], *(f"{100 * last[k]:.2f}%" for k in keys),
                                                    f"{last.get('lr', float('nan')):.0e}"]]))
    return "".join(out)


def section_errors(ctx: Context, compute: bool) -> str:
    path = ctx.run / "eval" / "eval.json"
    source = f"{path}"
    if path.is_file():
        summary = json.loads(path.read_text())
    elif compute and ctx.store is not None:
        from alexnet.inference.evaluate import evaluate_checkpoint

        result = evaluate_checkpoint(ctx.trained.path, ctx.store.path, split=ctx.val_split,
                                     out=ctx.run / "eval", progress=False)
        summary = {"split": result.split, "images": int(len(result.labels)), **result.errors()}
        source = f"computed now with evaluate_checkpoint, saved to {path}"
    else:
        why = ctx.store_problem or "evaluation was switched off (--no-eval)"
        return note(f"no {path} and cannot compute it: {why}; run `alexnet eval {ctx.run} STORE`")
    names = {"centre": "1 CNN, centre patch", "ten": "1 CNN, ten patches (§4.1)"}
    rows = [[names[m], f"{100 * summary[f'{m}_top1_error']:.1f}%", f"{100 * summary[f'{m}_top5_error']:.1f}%"]
            for m in ("centre", "ten") if f"{m}_top1_error" in summary]
    head = [f"model ({summary.get('split', '?')}, {summary.get('images', '?')} images)", "top-1", "top-5"]
    return html_table(head, rows) + note(f"source: {source}")


def section_kernels(ctx: Context) -> str:
    from alexnet.probes.kernels import colour_summary, kernel_grid
    from alexnet.probes.plots import image_png

    w = ctx.model.conv1_kernels().cpu().numpy()
    grid, _ = kernel_grid(w, ctx.model.columns)
    scale = max(1, 96 // max(w.shape[2], 1) // 2)
    s = colour_summary(w, ctx.model.columns)
    rows = [[c["column"], f"{c['kernels'][0]}-{c['kernels'][1] - 1}", f"{c['colour_energy']:.3f}",
             f"{c['channel_spread']:.3f}"] for c in s["per_column"]]
    text = ""
    if "more_colour_specific_column" in s:
        text = note(f"more colour-specific: column {s['more_colour_specific_column']} (colour-energy ratio "
                    f"{s['colour_energy_ratio']:.2f}; {s['colour_energy_split_p']:.0%} of random equal splits of "
                    f"the same kernels are as far apart); the paper (§6.1): column 1 colour-agnostic, column 2 "
                    f"colour-specific, modulo a renumbering of the columns")
    return (img(image_png(grid, scale), "conv1 kernels, column 1 on top") +
            html_table(["column", "kernels", "colour energy", "channel spread"], rows) + text)


def _class_names(ctx: Context) -> list[str]:
    return [str(name) for _, name in ctx.trained.classes]


def section_predictions(ctx: Context, count: int) -> str:
    from alexnet.probes.features import features_of
    from alexnet.probes.plots import top5_panel

    if ctx.store is None or ctx.val_split is None:
        return note(f"no validation images: {ctx.store_problem or 'the store has no val or test split'}")
    split = ctx.store.split(ctx.val_split)
    rows = np.linspace(0, len(split) - 1, min(count, len(split))).round().astype(np.int64)
    probs = features_of(ctx.trained, split, rows, probabilities=True)
    k = min(RETRIEVAL.top_k, probs.shape[1])
    top = np.argsort(-probs, 1, kind="stable")[:, :k]
    names = _class_names(ctx)
    labels = split.labels[rows]
    true_in = [int(np.flatnonzero(top[i] == labels[i])[0]) if labels[i] in top[i] else -1 for i in range(len(rows))]
    png = top5_panel(split.read(rows), [[names[j] for j in t] for t in top], np.take_along_axis(probs, top, 1),
                     [names[c] if c >= 0 else "?" for c in labels], true_in)
    hits = sum(t >= 0 for t in true_in)
    return img(png, "top-5 predictions") + note(
        f"{len(rows)} {ctx.val_split} images evenly spaced through the split; correct label in the top {k} for {hits}")


def section_neighbours(ctx: Context, queries: int, pool: int) -> str:
    from alexnet.probes.features import features_of
    from alexnet.probes.neighbours import knn
    from alexnet.probes.plots import neighbour_grid

    if ctx.store is None or ctx.val_split is None or "train" not in ctx.store.splits():
        return note(f"no images to search: {ctx.store_problem or 'the store needs train and val/test splits'}")
    train, val = ctx.store.split("train"), ctx.store.split(ctx.val_split)
    db_rows = np.linspace(0, len(train) - 1, min(pool, len(train))).round().astype(np.int64)
    db_rows = np.unique(db_rows)
    q_rows = np.linspace(0, len(val) - 1, min(queries, len(val))).round().astype(np.int64)
    k = min(RETRIEVAL.figure4_neighbours, len(db_rows))
    db = features_of(ctx.trained, train, db_rows)
    q = features_of(ctx.trained, val, q_rows)
    nb = knn(db, q, k, engine="numpy")
    found = db_rows[nb.indices]
    names = _class_names(ctx)
    q_img = val.read(q_rows)
    n_img = train.read(found.reshape(-1)).reshape(found.shape + q_img.shape[1:])
    label = lambda c: names[c] if 0 <= c < len(names) else "?"  # noqa: E731
    png = neighbour_grid(q_img, n_img, query_titles=[f"query: {label(c)}" for c in val.labels[q_rows]],
                         neighbour_titles=[[label(c) for c in train.labels[r]] for r in found])
    same = float((train.labels[found] == val.labels[q_rows][:, None]).mean())
    return img(png, "nearest neighbours") + note(
        f"{len(q_rows)} {ctx.val_split} images (first column) and the {k} training images nearest in fc7 "
        f"(squared Euclidean distance), searched among {len(db_rows)} training images; "
        f"{100 * same:.0f}% share the query's class")


CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.85em}img{max-width:100%;display:block;margin:.5em 0}
.note{color:#555;font-size:.9em}.error{color:#a00}"""


def build_report(
    run: str | Path,
    *,
    store: str | None = None,
    compute_eval: bool = True,
    predictions: int = RETRIEVAL.figure4_left_images,
    queries: int = RETRIEVAL.figure4_queries,
    pool: int = 2000,
    device: str = "auto",
) -> str:
    """The HTML page of a run (a run directory or a checkpoint file in one), as a string."""
    from alexnet.inference.trained import TrainedRun

    trained = TrainedRun.open(run, device=device)
    folder = trained.folder or trained.path.parent
    ctx = Context(folder, trained)
    _open_store(ctx, store)
    builders = {
        "config": lambda: section_config(ctx),
        "curves": lambda: section_curves(ctx),
        "errors": lambda: section_errors(ctx, compute_eval),
        "kernels": lambda: section_kernels(ctx),
        "predictions": lambda: section_predictions(ctx, predictions),
        "neighbours": lambda: section_neighbours(ctx, queries, pool),
    }
    body = []
    for sid, title in SECTIONS:
        try:
            content = builders[sid]()
        except UserError as err:
            content = f'<p class="error">{html.escape(str(err))}</p>'
        body.append(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>')
    title = f"alexnet run {folder.resolve().name}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="note">{html.escape(str(trained.path.resolve()))}; reading {html.escape(trained.spec.reading)}; '
            f'inputs: {html.escape(trained.preprocessing)}</p>'
            + "".join(body) + "</body></html>\n")


def write_report(run: str | Path, out: str | Path | None = None, **kwargs: Any) -> Path:
    """Write the page to ``out`` (default: ``report.html`` in the run directory, else beside the checkpoint)."""
    page = build_report(run, **kwargs)
    run = Path(run)
    path = Path(out) if out else (run if run.is_dir() else run.parent) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, "utf-8")
    return path
