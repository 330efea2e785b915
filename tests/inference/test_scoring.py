"""Top-k errors (§2: "top-1 and top-5") and the ten-patch average (§4.1), checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alexnet.inference.scoring import average_softmax, topk_error_rates, topk_errors, topk_hits


def test_ties_go_to_the_lower_class_index() -> None:
    """Equal scores rank by class index (a stable sort), for numpy and torch callers alike: with 40 equal
    scores the top-5 are classes 0..4, whatever an unstable sort would pick."""
    scores = torch.zeros(4, 40)
    labels = torch.tensor([0, 4, 5, 39])
    assert topk_hits(scores, labels, 1).tolist() == [True, False, False, False]
    assert topk_hits(scores, labels, 5).tolist() == [True, True, False, False]
    assert topk_errors(scores.numpy(), labels.numpy(), (1, 5)) == [3, 2]


def test_half_precision_scores_are_ranked() -> None:
    """bf16 logits (``run.amp=bf16``) have no numpy type: they are ranked as tensors."""
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]).bfloat16()
    assert topk_hits(scores, torch.tensor([1, 2]), 1).tolist() == [True, False]


def test_no_images_give_nan_errors() -> None:
    rates = topk_error_rates(np.zeros((0, 10)), np.zeros(0, np.int64), (1, 5))
    assert len(rates) == 2 and all(math.isnan(r) for r in rates)


def test_average_softmax_by_hand_for_one_image() -> None:
    """One image, two views with logits (0, ln 3, 0) and (ln 3, 0, 0): softmaxes (1, 3, 1)/5 and (3, 1, 1)/5,
    mean (2/5, 2/5, 1/5).  The softmax of the mean logits, (√3, √3, 1)/(2√3 + 1) = (0.388, 0.388, 0.224),
    is not it (§4.1 averages the softmax outputs)."""
    ln3 = math.log(3)
    logits = torch.tensor([[0.0, ln3, 0.0], [ln3, 0.0, 0.0]], dtype=torch.float64)
    got = average_softmax(logits, 2)
    assert got.shape == (1, 3)
    torch.testing.assert_close(got, torch.tensor([[0.4, 0.4, 0.2]]), rtol=0, atol=1e-6)


def test_error_rates_for_any_list_of_k() -> None:
    """Label ranks 1, 2, 3 and 4 among four classes: top-1 misses 3 of 4, top-2 2, top-3 1."""
    scores = np.array([[4.0, 3.0, 2.0, 1.0]] * 4)
    assert topk_error_rates(scores, np.array([0, 1, 2, 3]), (1, 2, 3)) == (0.75, 0.5, 0.25)
