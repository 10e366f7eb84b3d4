"""The paper's block-wise MRP search (APT option ``search="blockwise"``), in SparseGPT's frame.

Columns are visited left to right in blocks of ``blocksize``, earlier columns frozen; ``R`` is
the upper Cholesky factor of ``H^-1`` (``docs/method.md``, "The mask searches").

* Unstructured: each block prunes its share of the matrix's count (cumulative over the block
  ends, so the total is exact), the lowest ``w^2 / [H^-1]_jj`` (the loss of removing a weight
  with every column free, which the refit that follows makes true), then the OBS update column
  by column inside the block and the lazy update of the columns after it.
* N:M: in every group of M columns each row evaluates the joint loss
  ``L*(Q) = 1/2 w_Q S^-1 w_Q^T`` of all C(M, N) patterns, takes the smallest and applies its
  joint update; one matmul per group serves every row and every pattern.

The refit on the final mask (:mod:`apt.pruning.mrp`) is applied by :func:`apt.pruning.apt.prune`.
"""

from __future__ import annotations

import torch

from apt.pruning.masks import lowest_k, prune_count
from apt.pruning.mrp import nm_patterns, pattern_operators
from apt.pruning.patterns import Pattern


def search_unstructured(W: torch.Tensor, R: torch.Tensor, sparsity: float,
                        blocksize: int) -> torch.Tensor:
    """Prune ``W`` (a view of its (inputs x outputs) transpose) in place; returns the mask."""
    m, n = W.shape
    mask = torch.zeros_like(W, dtype=torch.bool)
    full_diag = R.pow(2).sum(0)          # diag(H^-1): single-removal loss with every column free
    done = 0
    for j in range(0, n, blocksize):
        e = min(j + blocksize, n)
        count = prune_count(sparsity, m * e) - done
        done += count
        m1 = lowest_k(W[:, j:e].pow(2) / full_diag[j:e].unsqueeze(0), count)
        _obs_update(W, R, j, e, m1)
        mask[:, j:e] = m1
    return mask


def _obs_update(W, R, j, e, m1):
    """Remove each row's set ``m1`` from columns [j, e) of ``W`` in place, column by column
    (SparseGPT's loop, on the transpose so that each column is contiguous), then the lazy
    update of the columns >= e."""
    W1T = W[:, j:e].t()
    in_place = W1T.is_contiguous()       # W is a view of its (inputs x outputs) transpose
    if not in_place:
        W1T = W1T.contiguous()
    mT = m1.t()
    A = R[j:e, j:e]
    d = torch.diagonal(A)
    Z1T = torch.empty_like(W1T)
    zero = torch.zeros((), dtype=W.dtype, device=W.device)
    for i in range(e - j):
        z = torch.where(mT[i], W1T[i], zero) / d[i]
        W1T[i:].addr_(A[i, i:], z, alpha=-1.0)
        W1T[i].masked_fill_(mT[i], 0.0)
        Z1T[i] = z
    if not in_place:
        W[:, j:e] = W1T.t()
    if e < W.shape[1]:
        W[:, e:].t().addmm_(R[j:e, e:].t(), Z1T, alpha=-1.0)


def search_nm(W: torch.Tensor, R: torch.Tensor, pattern: Pattern, blocksize: int) -> torch.Tensor:
    """Prune ``W`` in place to ``pattern`` (N:M) by the joint loss; returns the mask."""
    m, n = W.shape
    M = pattern.m
    B = max(M, (blocksize // M) * M)
    pats = nm_patterns(pattern.n, M, device=W.device)
    P = len(pats)
    idx = torch.arange(n, device=W.device).reshape(n // M, M)
    Rd = R[idx.unsqueeze(2), idx.unsqueeze(1)]              # diagonal M x M blocks of R
    Sinv, T = pattern_operators(Rd.transpose(1, 2) @ Rd, pats)
    # Every pattern's loss is a quadratic form and its update a linear map of the group's
    # weights: L_p = (w x w) . K_p and dw_p = -w F_p, so one matmul each serves all rows.
    G_ = idx.shape[0]
    K = torch.zeros(G_, P, M, M, dtype=W.dtype, device=W.device)
    pidx = torch.arange(P, device=W.device)
    K[:, pidx.unsqueeze(1).unsqueeze(2), pats.unsqueeze(2), pats.unsqueeze(1)] = 0.5 * Sinv
    Kt = K.reshape(G_, P, M * M).contiguous()                 # (groups, P, M*M)
    F = torch.zeros(G_, P, M, M, dtype=W.dtype, device=W.device)
    F[:, pidx.unsqueeze(1), pats] = T                          # F_p[Q_i, :] = T_p[i, :]
    Ft = F.permute(0, 2, 1, 3).reshape(G_, M, P * M).transpose(1, 2).contiguous()
    RdinvT = torch.linalg.inv(Rd).transpose(1, 2).contiguous()
    pm = torch.zeros(P, M, dtype=torch.bool, device=W.device)
    pm.scatter_(1, pats, True)
    # the loop runs on a transposed copy (inputs x outputs): a group's weights are contiguous
    WT = W.t().contiguous()
    maskT = torch.zeros(n, m, dtype=torch.bool, device=W.device)
    for j in range(0, n, B):
        e = min(j + B, n)
        W1 = WT[j:e]                                          # view, updated in place
        Z1 = torch.empty_like(W1)
        for c in range(0, e - j, M):
            t = (j + c) // M
            w = W1[c:c + M]                                   # (M, rows)
            quad = (w.unsqueeze(1) * w.unsqueeze(0)).reshape(M * M, m)
            choice = (Kt[t] @ quad).argmin(0)                 # (rows,)
            allu = (Ft[t] @ w).view(P, M, m)
            dw = -allu.gather(0, choice.view(1, 1, m).expand(1, M, m)).squeeze(0)
            gm = pm[choice].t()
            w.add_(dw).masked_fill_(gm, 0.0)
            z = -(RdinvT[t] @ dw)                             # z R[g, g] = -dw, transposed
            if c + M < e - j:
                W1[c + M:].addmm_(R[j + c:j + c + M, j + c + M:e].t(), z, alpha=-1.0)
            Z1[c:c + M] = z
            maskT[j + c:j + c + M] = gm
        if e < n:
            WT[e:].addmm_(R[j:e, e:].t(), Z1, alpha=-1.0)
    W.copy_(WT.t())
    return maskT.t()
