"""Wanda: score ``|w_ij| * ||X_j||_2``, compared within each output row (N:M within each group).

Only ``diag(H)`` is needed: ``diag(H)_j = (2/T) ||X_j||^2``, a common factor that does not change
the ranking inside a row. No weight update.
"""

from __future__ import annotations

import torch

from apt.pruning.masks import select
from apt.pruning.patterns import Pattern

NEEDS_HESSIAN = True
#: the count is per row (``floor(sparsity * cols)`` in each): OWL's allocation counts in rows
COUNTS_PER_ROW = True


def prune(weight: torch.Tensor, hessian: torch.Tensor, pattern: Pattern, sparsity: float,
          **_: object):
    w = weight.to(torch.float64 if weight.dtype == torch.float64 else torch.float32)
    diag = torch.diagonal(hessian).to(device=w.device, dtype=w.dtype)
    scores = w.abs() * diag.clamp_min(0).sqrt().unsqueeze(0)
    mask = select(scores, pattern, sparsity, per_row=True)
    return w.masked_fill(mask, 0.0), mask, {}
