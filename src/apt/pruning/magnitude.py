"""Magnitude pruning: zero the smallest |w| of the whole matrix (unstructured) or of each group."""

from __future__ import annotations

import torch

from apt.pruning.masks import select
from apt.pruning.patterns import Pattern

NEEDS_HESSIAN = False


def prune(weight: torch.Tensor, hessian: torch.Tensor | None, pattern: Pattern, sparsity: float,
          **_: object):
    w = weight.float()
    mask = select(w.abs(), pattern, sparsity, per_row=False)
    return w.masked_fill(mask, 0.0), mask, {}
