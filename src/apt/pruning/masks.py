"""Mask selection from scores: lowest scores are pruned.

Counts follow the published reference code (Wanda's ``int(cols * sparsity)`` per row, the
magnitude baseline's and SparseGPT's ``int(numel * sparsity)``): :func:`prune_count` is the floor,
with a tolerance so that e.g. ``0.29 * 100`` counts 29, not 28.
"""

from __future__ import annotations

import math

import torch

from apt.pruning.patterns import Pattern


def prune_count(sparsity: float, total: int) -> int:
    """How many of ``total`` weights a fraction ``sparsity`` prunes: ``floor(sparsity * total)``."""
    return int(math.floor(sparsity * total + 1e-9))


def lowest_in_groups(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Mask (True = prune) of the ``n`` lowest scores in every ``m`` consecutive columns of each row."""
    rows, cols = scores.shape
    groups = scores.reshape(rows, cols // m, m)
    idx = torch.topk(groups, n, dim=-1, largest=False).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, idx, True)
    return mask.reshape(rows, cols)


def lowest_per_row(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask of the ``prune_count(sparsity, cols)`` lowest scores of each row."""
    k = prune_count(sparsity, scores.shape[1])
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k:
        idx = torch.topk(scores, k, dim=1, largest=False).indices
        mask.scatter_(1, idx, True)
    return mask


def lowest_overall(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask of the ``prune_count(sparsity, numel)`` lowest scores of the whole matrix."""
    k = prune_count(sparsity, scores.numel())
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k:
        idx = torch.topk(scores.flatten(), k, largest=False).indices
        mask[idx] = True
    return mask.reshape(scores.shape)


def select(scores: torch.Tensor, pattern: Pattern, sparsity: float, per_row: bool) -> torch.Tensor:
    if pattern.structured:
        return lowest_in_groups(scores, pattern.n, pattern.m)
    return lowest_per_row(scores, sparsity) if per_row else lowest_overall(scores, sparsity)
