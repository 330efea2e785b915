"""Add §6.1's split null to the workhorse seeds of docs/results/imagenette-128.json from their checkpoints.

    python tools/colour_record.py RESULTS.json CHECKPOINT [...]

The experiment records, per workhorse net, conv1's colour energy per column and (since 7 December 2026) the
null of their difference: the mean |difference| over random equal splits of the same kernels, and the share of
splits at least as far apart (alexnet.probes.kernels.column_split_null).  For nets recorded before, this
computes the null from each net's checkpoint (best.pt of its run folder); a checkpoint whose conv1 does not
give its seed's recorded colour energies is refused.  Then run tools/claims_record.py and refresh
docs/results.md's blocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alexnet.errors import UserError
from alexnet.experiments import record
from alexnet.experiments.imagenette128 import with_colour_null

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    results, *paths = sys.argv[1:]
    try:
        doc = with_colour_null(record.load(results), [Path(p) for p in paths])
    except (OSError, ValueError, UserError) as err:
        sys.exit(f"colour_record: {err}")
    doc.pop("format", None)
    print(record.write(doc, Path(results)))
