"""Mutation scores (``make mutate``; docs/testing.md) from mutmut's results under ``mutants/``.

    python tools/mutation_score.py                    # mutmut's own verdicts per module, and the survivors
    python tools/mutation_score.py --update MODULE... # recount MODULEs into docs/results/mutation.json
    python tools/mutation_score.py --table            # the Score table of docs/testing.md, from that file

mutmut's verdicts: killed (a test failed or timed out), survived, no tests (no selected test reaches the
function), not run.  ``--update`` then reads each survivor's verdict from ``docs/mutants/MODULE.md`` (a row
naming the mutant, alone, in a list or in a range ``_4`` – ``_9``): "killed by" a later test, "equivalent",
or else left, and writes the module's counts, with the date, to ``docs/results/mutation.json``, the committed
file that the Score table is recomputed from (``tests/test_layout.py`` checks that the table matches it).
"""

from __future__ import annotations

import datetime
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "mutation.json"
KILLED = {1, 3, 24, -24, 36, 152, 255}  # a failing test, a pytest internal error, or a timeout
SURVIVED = {0}
NO_TESTS = {5, 33}
NOT_RUN = {None, 2}
COUNTS = ("killed_by_mutmut", "killed_later", "equivalent", "left", "not_run")


def exit_codes(module: str, root: Path = ROOT / "mutants") -> dict[str, int | None]:
    """mutmut's exit code per mutant of ``module`` (``alexnet.net.lrn``)."""
    meta = root / "src" / (module.replace(".", "/") + ".py.meta")
    return json.loads(meta.read_text())["exit_code_by_key"]


def verdicts(markdown: str) -> dict[str, str]:
    """Mutant (short name, ``x_f__mutmut_3``) -> its verdict cell, from a docs/mutants table."""
    out: dict[str, str] = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or "__mutmut_" not in cells[0]:
            continue
        func = None
        for part in re.split(r",\s*", cells[0].replace("`", "")):
            for a, b in [(m.group(1), m.group(2)) for m in [re.fullmatch(r"_(\d+)\s*[–-]\s*_(\d+)", part)] if m]:
                for i in range(int(a), int(b) + 1):
                    out[f"{func}__mutmut_{i}"] = cells[-1]
                break
            else:
                named = re.fullmatch(r"(\S+?)__mutmut_(\d+)(?:\s*[–-]\s*_(\d+))?(?:\s*\(.*\))?", part)
                if named:
                    func = named.group(1)
                    last = int(named.group(3) or named.group(2))
                    for i in range(int(named.group(2)), last + 1):
                        out[f"{func}__mutmut_{i}"] = cells[-1]
                elif func and re.fullmatch(r"_(\d+)", part):
                    out[f"{func}__mutmut_{part[1:]}"] = cells[-1]
    return out


def recount(module: str, markdown: str, codes: dict[str, int | None]) -> dict[str, int]:
    """A module's counts: mutmut's kills, and each survivor by its verdict in ``markdown``."""
    given = verdicts(markdown)
    count = Counter({k: 0 for k in COUNTS})
    for name, code in codes.items():
        if code in NOT_RUN:
            count["not_run"] += 1
        elif code in KILLED:
            count["killed_by_mutmut"] += 1
        else:
            verdict = given.get(name.rsplit(".", 1)[-1], "")
            count["killed_later" if verdict.startswith("killed") else
                  "equivalent" if verdict.startswith("equivalent") else "left"] += 1
    return {"mutants": len(codes), **{k: count[k] for k in COUNTS}}


def score_row(module: str, c: dict[str, int | str]) -> str:
    run = c["mutants"] - c["not_run"]
    killed = c["killed_by_mutmut"] + c["killed_later"]
    s1 = f"{100 * killed / run:.1f}%" if run else "—"
    s2 = f"{100 * killed / (run - c['equivalent']):.1f}%" if run > c["equivalent"] else "—"
    return (f"| `{module}` | {c['mutants']} | {run} | {c['killed_by_mutmut']} | {c['killed_later']} | "
            f"{c['equivalent']} | {c['left']} | {c['not_run']} | {s1} | {s2} | {c.get('measured', '')} | "
            f"{c.get('verdicts', '')} |")


def table(doc: dict) -> str:
    """The Score table of docs/testing.md: one row per module and the total."""
    head = ("| module | mutants | run | killed by mutmut | killed by a later test (re-checked) | equivalent | left | "
            "not run | score: killed / run | killed / (run − equivalent) | measured | verdicts |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    modules = doc["modules"]
    total = {k: sum(m[k] for m in modules.values()) for k in ("mutants", *COUNTS)}
    return head + "\n".join([*(score_row(name, c) for name, c in modules.items()), score_row("all", total)]) + "\n"


def update(modules: list[str]) -> None:
    doc = json.loads(RESULTS.read_text())
    for module in modules:
        short = module.removeprefix("alexnet.")
        md = ROOT / "docs" / "mutants" / f"{short}.md"
        counts = recount(module, md.read_text() if md.is_file() else "", exit_codes(module))
        old = doc["modules"].get(module, {})
        doc["modules"][module] = {**old, **counts, "measured": datetime.date.today().isoformat()}
    RESULTS.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def status(root: Path = ROOT / "mutants") -> int:
    metas = sorted(root.rglob("*.py.meta"))
    if not metas:
        print(f"no mutmut results under {root}/: run `make mutate` first")
        return 1
    print("| module | mutants | killed | survived | no tests | not run | score |")
    print("|---|---|---|---|---|---|---|")
    survivors = []
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        count = Counter("killed" if c in KILLED else "survived" if c in SURVIVED else "no tests" if c in NO_TESTS
                        else "not run" if c in NOT_RUN else "other" for c in codes.values())
        survivors += [name for name, c in codes.items() if c in SURVIVED]
        run = count["killed"] + count["survived"] + count["no tests"] + count["other"]
        score = f"{100 * count['killed'] / run:.1f}%" if run else "—"
        module = str(meta.relative_to(root / "src")).removesuffix(".py.meta").replace("/", ".")
        print(f"| {module} | {len(codes)} | {count['killed']} | {count['survived']} | {count['no tests']} | "
              f"{count['not run']} | {score} |")
    print(f"\nsurvivors ({len(survivors)}; `mutmut show NAME` prints the change):")
    for name in survivors:
        print(" ", name)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--update"]:
        update(args[1:])
        print(table(json.loads(RESULTS.read_text())), end="")
    elif args[:1] == ["--table"]:
        print(table(json.loads(RESULTS.read_text())), end="")
    else:
        sys.exit(status(*(Path(a) for a in args)))
