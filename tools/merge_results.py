"""Merge results files of one experiment run in parts (e.g. ``--seeds 2`` and ``--first-seed 2 --seeds 1``).

    python tools/merge_results.py OUT.json A.json B.json [...]

Writes OUT.json with the arms' per-seed values united (alexnet.experiments.record.merge); a seed measured twice
in one arm is an error.  Recompute the docs' tables afterwards (tests/experiments/test_record.py names them).
"""

from __future__ import annotations

import sys
from pathlib import Path

from alexnet.experiments import record

if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, *parts = sys.argv[1:]
    try:
        doc = record.merge([record.load(p) for p in parts])
    except (OSError, ValueError) as err:
        sys.exit(f"merge_results: {err}")
    doc.pop("format", None)
    print(record.write(doc, Path(out)))
