"""The mutation score per module from mutmut's results under ``mutants/`` (``make mutate``; docs/testing.md).

Prints one Markdown row per mutated module: mutants, killed (a test failed or timed out), survived,
no tests (no selected test reaches the function), not run (not checked yet), and the score
killed / (killed + survived + no tests) over the mutants that were run.  Equivalent mutants are
recorded by hand in docs/testing.md, not here.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 152, 255}  # a failing test, a pytest internal error, or a timeout
SURVIVED = {0}
NO_TESTS = {5, 33}
NOT_RUN = {None, 2}


def main(root: Path = Path("mutants")) -> int:
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
    sys.exit(main(*(Path(a) for a in sys.argv[1:])))
