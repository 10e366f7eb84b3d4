"""Magnitude pruning: zero the smallest |w| of the whole matrix (unstructured) or of each group.

As the magnitude baseline of the Wanda code (`prune_magnitude`): one threshold per layer for
unstructured sparsity, the N smallest |w| of every M consecutive inputs of each row for N:M.
"""

from __future__ import annotations

import torch

from apt.pruning.masks import select
from apt.pruning.patterns import Pattern

NEEDS_HESSIAN = False


def prune(weight: torch.Tensor, hessian: torch.Tensor | None, pattern: Pattern, sparsity: float,
          **_: object):
    w = weight.to(torch.float64 if weight.dtype == torch.float64 else torch.float32)
    mask = select(w.abs(), pattern, sparsity, per_row=False)
    return w.masked_fill(mask, 0.0), mask, {}
