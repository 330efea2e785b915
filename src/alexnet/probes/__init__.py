"""Looking inside a trained network (§6.1): features, neighbours, binary codes, kernels, reports."""
