"""Using a trained run: open it, evaluate it (§4.1, Table 2), ensembles (§6), predictions, export."""
