"""Shared fixtures: small generated stores, so that tests need no downloaded data (helpers: ``helpers.py``)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import make_store


@pytest.fixture(autouse=True)
def _same_global_rng_state_for_every_test():
    """Tests that draw from the global generators see the same numbers whatever ran before them."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def tiny_store(tmp_path: Path):
    return make_store(tmp_path / "store")
