"""SparseGPT (Frantar & Alistarh 2023), as the reference ``SparseGPT.fasterprune`` computes it.

Column by column, left to right: each column's pruned weights are set to zero and the error is
spread over the columns not yet processed with the optimal single-removal (OBS) update taken from
the upper Cholesky factor ``R`` of ``H^-1`` (row ``j`` of ``R`` gives ``(H[j:, j:])^-1`` restricted
to column ``j``). Updates to later blocks are applied lazily, once per block of ``blocksize``
columns. Mask rule of the reference:

- unstructured: at the start of each block, score ``w^2 / R[j, j]^2`` over the whole
  ``m x blocksize`` block and prune the lowest;
- N:M: at the first column of each group of M, the N lowest scores of the group in each row
  (scores from the weights as updated so far).

Two deliberate differences from the reference, both documented in ``info``:

- the unstructured count per block is exact (cumulative ``floor``), so the whole matrix has
  exactly ``floor(sparsity * m * n)`` pruned weights; the reference's ``score <= sorted[k]``
  prunes ``k + 1`` per block (more with ties);
- for N:M the block size is rounded down to a multiple of M (groups never straddle blocks;
  the reference only runs with 128, a multiple of every M it supports).

Dead inputs (``diag(H) == 0``) are pruned outright and are part of the mask. The work runs on a
transposed copy (inputs x outputs) so that every column update touches contiguous memory.
"""

from __future__ import annotations

import torch

from apt.pruning.hessian import compute_dtype, prepare

#: the reference code's damping (fraction of mean(diag H))
DEFAULT_PERCDAMP = 0.01
from apt.pruning.masks import lowest_k, prune_count
from apt.pruning.patterns import Pattern

NEEDS_HESSIAN = True
#: what each layer reconstructs by default in a sequential run (apt.engine.sequential)
RECONSTRUCT = "layer"


def prune(weight: torch.Tensor, hessian: torch.Tensor, pattern: Pattern, sparsity: float,
          blocksize: int = 128, percdamp: float | None = None, dtype: torch.dtype | None = None,
          **_: object):
    """Return ``(pruned weight in the compute dtype, mask, info)``; see the module docstring."""
    device = weight.device
    m, n = weight.shape
    percdamp = DEFAULT_PERCDAMP if percdamp is None else percdamp
    dtype = dtype or compute_dtype(n, device)
    prep = prepare(hessian.to(device), percdamp, dtype=dtype)
    R = prep.hinv_chol
    dead = prep.dead

    WT = weight.to(dtype=dtype).t().contiguous()      # (n x m): column j of W is row j of WT
    WT[dead] = 0
    maskT = torch.zeros(n, m, dtype=torch.bool, device=device)
    maskT[dead] = True
    if pattern.structured:
        blocksize = max(pattern.m, blocksize // pattern.m * pattern.m)
    losses = torch.zeros(m, dtype=dtype, device=device)
    rdiag = torch.diagonal(R)

    for i1 in range(0, n, blocksize):
        i2 = min(i1 + blocksize, n)
        W1 = WT[i1:i2]                                  # view: updated in place
        R1 = R[i1:i2, i1:i2]
        d1 = rdiag[i1:i2]
        M1 = maskT[i1:i2]
        Err1 = torch.empty_like(W1)
        if not pattern.structured:
            k = prune_count(sparsity, m * i2) - prune_count(sparsity, m * i1)
            if k:
                scores = (W1 ** 2) / (d1 ** 2).unsqueeze(1)
                scores[M1] = -1.0                        # dead inputs are pruned first
                M1 |= lowest_k(scores, k)
        for i in range(i2 - i1):
            if pattern.structured and i % pattern.m == 0:
                g = slice(i, i + pattern.m)
                scores = (W1[g] ** 2) / (d1[g] ** 2).unsqueeze(1)
                scores[M1[g]] = -1.0
                idx = torch.topk(scores, pattern.n, dim=0, largest=False).indices
                M1[g].scatter_(0, idx, True)
            err = torch.mul(W1[i], M1[i], out=Err1[i]).div_(d1[i])   # w_q / R[q, q], q pruned
            # W1[i:, :] -= R1[i, i:]^T err  (the OBS update of the still-free columns of the block)
            W1[i:].addr_(R1[i, i:], err, alpha=-1.0)
            W1[i].masked_fill_(M1[i], 0.0)              # exact zeros where pruned
        losses.add_((Err1 * Err1).sum(0))
        if i2 < n:
            WT[i2:].addmm_(R[i1:i2, i2:].t(), Err1, alpha=-1.0)

    info = prep.info()
    info.update({"method": "sparsegpt", "blocksize": blocksize, "compute_dtype": str(dtype),
                 "obs_loss": float(losses.sum() / 2),
                 "mask_rule": "exact count per block" if not pattern.structured else "N:M"})
    return WT.t().contiguous(), maskT.t().contiguous(), info
