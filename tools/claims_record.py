"""Write docs/results/claims.json, the claims overview, from the committed results files (docs/results.md).

    python tools/claims_record.py [RESULTS_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from alexnet.experiments import claims, record

if __name__ == "__main__":
    results = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "results"
    try:
        doc = claims.build(results)
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        sys.exit(f"claims_record: {err}")
    print(record.write(doc, results / "claims.json"))
