"""Results files: every number in the README and ``docs/`` comes from one of these, and its table is recomputed.

A results file (``docs/results/NAME.json``, committed) is a small JSON document::

    {
      "name": "imagenette-128",                  # the file's stem
      "question": "...",                         # what the measurement answers
      "command": "alexnet experiment ...",       # how to rerun it
      "environment": {...},                      # versions, CPU/GPU, threads, load
      "rule": "...",                             # the verdict rule, stated before measuring
      "arms": {                                  # one entry per thing compared
        "paper-init": {"label": "...", "per_seed": {"0": {"metric": value, ...}, "1": {...}}, ...}
      },
      "table": {                                 # how the table is computed from the arms
        "columns": [{"metric": "ten_top1_accuracy", "label": "top-1 (ten patches)", "format": "pct"}, ...],
        "rows": ["paper-init", ...],
        "reference": [{"label": "paper", "values": {"metric": value or text}}, ...]
      },
      "verdicts": [{"claim": "...", "a": arm, "b": arm, "metric": m, "smaller_is_better": true}],
      "notes": ["..."]
    }

:func:`render` turns such a document into the Markdown table that ``docs/results.md``
shows between ``<!-- results: docs/results/NAME.json -->`` and ``<!-- end results -->``;
a test recomputes every such block from the committed file.  Each cell is the mean ±
sample standard deviation over the arm's seeds (and the number of seeds); a verdict
compares two arms by the rule stated beforehand: a difference counts when it exceeds
two standard errors of the difference.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

FORMAT_VERSION = 1
FORMATS = ("pct", "num", "int", "text", "verdict")
#: The verdict rule every comparison uses unless its file states another.
RULE = "a difference counts when it exceeds 2 standard errors of the difference of the means (Welch)"
BLOCK = re.compile(r"<!-- results: (\S+) -->\n(.*?)<!-- end results -->", re.S)


def seed_values(arm: dict[str, Any], metric: str) -> list[float]:
    """The metric's value for each seed of an arm that has it (None and NaN left out)."""
    return list(seed_value_map(arm, metric).values())


def seed_value_map(arm: dict[str, Any], metric: str) -> dict[str, float]:
    """:func:`seed_values` keyed by the seed (the arm's ``per_seed`` key)."""
    out = {}
    for seed, values in arm.get("per_seed", {}).items():
        v = values.get(metric)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            out[seed] = float(v)
    return out


def summary(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation, n); the std is 0 for one value and NaN for none."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0, 1
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var), n


def fmt_value(value: float, kind: str) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{value:,.0f}"
    return f"{value:.4g}"


def cell(values: Sequence[float], kind: str, missing: str = "not measured") -> str:
    """Mean ± std (n) of per-seed values, formatted; a single value has no ±; ``missing`` when there are none."""
    mean, std, n = summary(values)
    if n == 0:
        return missing
    if n == 1:
        return fmt_value(mean, kind) + " (1 seed)"
    spread = fmt_value(std, kind).rstrip("%") if kind == "pct" else fmt_value(std, kind)
    return f"{fmt_value(mean, kind)} ± {spread} (n = {n})"


def verdict(a: Sequence[float], b: Sequence[float], smaller_is_better: bool = True) -> dict[str, Any]:
    """Compare arm a with arm b by :data:`RULE`: difference of means, its standard error, and the answer."""
    (ma, sa, na), (mb, sb, nb) = summary(a), summary(b)
    if na < 2 or nb < 2:
        return {"difference": ma - mb if na and nb else math.nan, "se": math.nan,
                "answer": "not decided (fewer than 2 seeds in an arm)"}
    se = math.sqrt(sa ** 2 / na + sb ** 2 / nb)
    diff = ma - mb
    if se == 0 or abs(diff) <= 2 * se:
        answer = "no difference by the rule"
    else:
        better = (diff < 0) == smaller_is_better
        answer = "the first is better" if better else "the second is better"
    return {"difference": diff, "se": se, "answer": answer}


#: what a positive and a negative paired effect mean, unless a row says otherwise (``"verdict_words"``)
PAPER_CHOICE_WORDS = ("the paper's choice is better", "the paper's choice is worse")


def effect_verdict(values: Sequence[float], words: Sequence[str] = PAPER_CHOICE_WORDS) -> str:
    """The verdict on a paired effect (per seed: the paper's choice's gain, positive when it helps) by :data:`RULE`.

    The effect counts when its mean is more than 2 standard errors (sample std / √n) away from 0; one seed
    decides nothing.  ``words`` say what a positive and a negative effect mean.
    """
    mean, std, n = summary(values)
    if n == 0:
        return "not measured"
    if n < 2:
        return "not decided (fewer than 2 seeds)"
    if std == 0 or abs(mean) <= 2 * std / math.sqrt(n):
        return "no difference by the rule"
    return words[0] if mean > 0 else words[1]


def arm_cell(name: str | None, arm: dict[str, Any], column: dict[str, Any]) -> str:
    """One row's cell of a column: mean ± std of the arm's seeds, the verdict on them, or the arm's own text.

    An arm may override a column's format for its row (``"formats": {metric: format}``), so that one column
    holds effects measured in different units; a ``text`` cell is the arm's ``"text"`` entry (the paper's or
    an anchor's figure, quoted with its source), and a ``verdict`` cell is :func:`effect_verdict` of the
    arm's per-seed values of the metric the column names in ``"of"`` (in the arm's ``"verdict_words"``, a
    positive and a negative phrase, where the paper's claim is not a choice against an ablation).
    """
    metric = column["metric"]
    kind = arm.get("formats", {}).get(metric, column.get("format", "num"))
    if kind not in FORMATS:
        raise ValueError(f"{name}: row {arm.get('label')!r} has unknown format {kind!r} for {metric}")
    if kind == "text":
        return arm.get("text", {}).get(metric, column.get("missing", "—"))
    if kind == "verdict":
        return effect_verdict(seed_values(arm, column["of"]), arm.get("verdict_words", PAPER_CHOICE_WORDS))
    return cell(seed_values(arm, metric), kind, column.get("missing", "not measured"))


def render(doc: dict[str, Any]) -> str:
    """The Markdown table (and verdict lines) of a results document; recomputed from its per-seed values."""
    table = doc["table"]
    columns = table["columns"]
    for c in columns:
        if c.get("format", "num") not in FORMATS:
            raise ValueError(f"{doc.get('name')}: column {c['metric']} has unknown format {c.get('format')!r}")
    head = ["", *[c["label"] for c in columns]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ref in table.get("reference", []):
        cells = [fmt_value(ref["values"].get(c["metric"], "—"), c.get("format", "num")) for c in columns]
        lines.append("| *" + ref["label"] + "* | " + " | ".join(f"*{x}*" for x in cells) + " |")
    for key in table["rows"]:
        arm = doc["arms"][key]
        cells = [arm_cell(doc.get("name"), arm, c) for c in columns]
        lines.append("| " + arm.get("label", key) + " | " + " | ".join(cells) + " |")
    out = "\n".join(lines) + "\n"
    for v in doc.get("verdicts", []):
        a, b = doc["arms"][v["a"]], doc["arms"][v["b"]]
        r = verdict(seed_values(a, v["metric"]), seed_values(b, v["metric"]), v.get("smaller_is_better", True))
        kind = next((c.get("format", "num") for c in columns if c["metric"] == v["metric"]), "num")
        diff = fmt_value(r["difference"], kind)
        se = "—" if math.isnan(r["se"]) else fmt_value(r["se"], kind)
        out += (f"\n- {v['claim']}: {a.get('label', v['a'])} − {b.get('label', v['b'])} = {diff} "
                f"(standard error {se}): **{r['answer']}**.")
    return out + ("\n" if doc.get("verdicts") else "")


def merge(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One results document from several runs of one experiment (seeds 0-1 in one run, seed 2 in another).

    The arms' per-seed values are united (an arm's seed measured in two documents is an error, so nothing is
    silently replaced); the first document gives the question, table and verdicts (a later document's columns
    that the first lacks are appended), and every document's command, environment and notes are kept, in order.
    """
    if not docs:
        raise ValueError("no results documents to merge")
    names = sorted({str(d.get("name")) for d in docs})
    if len(names) > 1:
        raise ValueError(f"results of different experiments cannot be merged: {', '.join(names)}")
    out = json.loads(json.dumps(docs[0], default=str))
    out["commands"] = [d.get("command") for d in docs]
    out["environments"] = [d.get("environment") for d in docs]
    for doc in docs[1:]:
        for key, arm in doc.get("arms", {}).items():
            target = out["arms"].setdefault(key, {**{k: v for k, v in arm.items() if k != "per_seed"},
                                                  "per_seed": {}})
            for seed, values in arm.get("per_seed", {}).items():
                if seed in target["per_seed"]:
                    raise ValueError(f"arm {key!r}: seed {seed} is in more than one results document")
                target["per_seed"][seed] = values
            if key not in out["table"]["rows"]:
                out["table"]["rows"].append(key)
        columns = out["table"].setdefault("columns", [])  # a later run may measure more: keep its columns
        known = {c["metric"] for c in columns}
        columns += [c for c in doc.get("table", {}).get("columns", []) if c["metric"] not in known]
        out["notes"] = [*out.get("notes", []), *doc.get("notes", [])]
    out["seeds"] = sorted({int(s) for d in docs for s in d.get("seeds", [])})
    return out


def load(path: str | Path) -> dict[str, Any]:
    """Read a results document; ValueError naming ``path`` if it is not JSON or not of this format."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a results file of format {FORMAT_VERSION}")
    return doc


def write(doc: dict[str, Any], path: str | Path) -> Path:
    """Write a results document (sorted keys, two-space indent) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT_VERSION, **doc}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    return path


def blocks(markdown: str) -> list[tuple[str, str]]:
    """(results file, table text) of every results block in a Markdown document."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(markdown)]


def refresh(markdown: str, root: Path) -> str:
    """The document with every results block recomputed from its file (paths relative to ``root``)."""
    return BLOCK.sub(lambda m: f"<!-- results: {m.group(1)} -->\n{render(load(root / m.group(1)))}<!-- end results -->",
                     markdown)
