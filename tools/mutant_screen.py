"""Run many mutants against test modules in one process, in mutmut's tree (docs/testing.md).

    cd mutants && PYTHONPATH=src OMP_NUM_THREADS=1 ../.venv/bin/python ../tools/mutant_screen.py NAMES_FILE TEST [TEST ...]
    ../.venv/bin/python ../tools/mutant_screen.py --record RESULTS_FILE [...]   # from mutants/'s parent

The first form prints ``killed NAME`` or ``SURVIVED NAME`` per mutant (``MUTANT_UNDER_TEST`` set, one
``pytest.main`` each, stopping at the first failure): seconds per mutant where ``mutmut run`` starts a process.
Put a name that does not exist first: it must come out SURVIVED, or the tests fail without any mutant and
every "kill" is false.  The second form writes such results into mutmut's results (``mutants/**/*.meta``)
for mutants that ``mutmut run`` has not decided (killed -> 1, SURVIVED -> 0); decided ones are left alone.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path


def screen(names: list[str], tests: list[str]) -> None:
    import pytest

    for name in names:
        os.environ["MUTANT_UNDER_TEST"] = name
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            rc = pytest.main(["-q", "-x", "-p", "no:cacheprovider", *tests])
        print("SURVIVED" if rc == 0 else "killed", name, flush=True)


def record(files: list[str], root: Path = Path("mutants")) -> None:
    verdict: dict[str, str] = {}
    for f in files:
        for line in Path(f).read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("killed", "SURVIVED") and verdict.get(parts[1]) != "killed":
                verdict[parts[1]] = parts[0]
    for meta in sorted((root / "src").rglob("*.py.meta")):
        doc = json.loads(meta.read_text())
        codes = doc["exit_code_by_key"]
        hits = [n for n in codes if codes[n] is None and n in verdict]
        for n in hits:
            codes[n] = 1 if verdict[n] == "killed" else 0
        if hits:
            meta.write_text(json.dumps(doc))
            print(f"{meta}: {len(hits)} verdicts written")


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    if args[0] == "--record":
        record(args[1:])
    else:
        screen([n.strip() for n in Path(args[0]).read_text().splitlines() if n.strip()], args[1:])
