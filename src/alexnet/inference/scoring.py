"""Scoring predictions: top-k error (§2: "top-1 and top-5") and the ten-patch average of §4.1.

One definition each, used by training's validation, evaluation, ensembles,
predictions and the experiments.  Ties between equal scores go to the lower
class index (a stable sort), so numpy and torch callers get the same answer.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))


def topk_hits(scores: Any, labels: Any, k: int) -> Tensor:
    """(N,) bool: whether each label is among the ``k`` highest of its (N, C) scores."""
    s, y = _as_tensor(scores), _as_tensor(labels)
    k = min(k, s.shape[1])
    top = torch.argsort(-s.float(), dim=1, stable=True)[:, :k]  # (N, k), ties to the lower index
    return (top == y.to(top.device)[:, None]).any(dim=1)


def topk_errors(scores: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> list[int]:
    """For each k, the number of examples whose label is not among the k highest scores."""
    return [int((~topk_hits(scores, labels, k)).sum()) for k in ks]


def topk_error_rates(scores: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> tuple[float, ...]:
    """Top-k error fractions (default top-1 and top-5) of (N, C) scores against (N,) labels; NaN when N = 0."""
    n = len(labels)
    if n == 0:
        return tuple(float("nan") for _ in ks)
    return tuple(e / n for e in topk_errors(scores, labels, ks))


def average_softmax(logits: Tensor, views: int) -> Tensor:
    """(B * views, C) logits of ``views`` patches per image -> (B, C): the mean of their softmax outputs.

    §4.1: "averaging the predictions made by the network's softmax layer on the ten
    patches" -- probabilities are averaged, not logits.
    """
    probs = logits.float().softmax(dim=1)
    return probs.view(-1, views, probs.shape[1]).mean(dim=1)


def ten_patch_probabilities(model: nn.Module, patches: Tensor) -> Tensor:
    """(B, 10, 3, c, c) patches -> (B, C): the network's softmax averaged over each image's ten patches."""
    b, v = patches.shape[:2]
    return average_softmax(model(patches.flatten(0, 1)), v)


def probabilities(model: nn.Module, x: Tensor) -> Tensor:
    """Softmax outputs for a batch of centre patches (B, 3, c, c) or of ten patches (B, 10, 3, c, c)."""
    if x.dim() == 5:
        return ten_patch_probabilities(model, x)
    return model(x).float().softmax(dim=1)
