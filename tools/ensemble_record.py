"""Recompute §6's ensemble rows of docs/results/imagenette-128.json from kept probability files.

    python tools/ensemble_record.py RESULTS.json probs_ten-workhorse-seed3.npz [...]

Each workhorse net of `alexnet experiment imagenette-128` keeps its ten-patch probabilities on val as
probs_ten-workhorse-seed<S>.npz in the run folder; committed under docs/results/probs/imagenette-128/, nets
trained in different runs (and sessions) can be averaged.  Every file must be a workhorse seed of RESULTS.json
with its recorded error.  Then run tools/claims_record.py and refresh docs/results.md's blocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alexnet.experiments import record
from alexnet.experiments.imagenette128 import with_kept_ensembles

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    results, *paths = sys.argv[1:]
    try:
        doc = with_kept_ensembles(record.load(results), [Path(p) for p in paths])
    except (OSError, ValueError) as err:
        sys.exit(f"ensemble_record: {err}")
    doc.pop("format", None)
    print(record.write(doc, Path(results)))
