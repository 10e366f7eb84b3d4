"""The multiple-removal (MRP) algebra (``docs/method.md``), batched over rows.

For one row ``w`` and a set ``Q`` of weights removed together while the columns of a trailing set
``U`` stay free, with ``G = (H[U, U])^-1``:

* ``dw* = - w_Q S^-1 G[Q, :]`` with ``S = G[Q, Q]``, and ``L*(Q) = 1/2 w_Q S^-1 w_Q^T``.

Rows carry different sets, so every solve here is a *masked* solve: the k x k system
``S x_Q = w_Q`` is embedded in the b x b matrix ``D G D + (I - D)`` (``D`` = diag of the row's
mask), which is SPD whenever ``G`` is, and whose solution is ``x_Q`` on ``Q`` and 0 elsewhere.
One batched Cholesky then serves every row, whatever its set size; rows are processed in chunks
so that the (rows x b x b) stack stays within a memory budget.
"""

from __future__ import annotations

import itertools

import torch

#: bytes allowed for one (rows x b x b) stack of the masked solves
CHUNK_BYTES = 256 * 2**20


def _row_chunks(m: int, b: int, itemsize: int, factor: int = 2):
    step = max(1, CHUNK_BYTES // max(1, factor * b * b * itemsize))
    for s in range(0, m, step):
        yield slice(s, min(m, s + step))


def masked_spd_solve(G: torch.Tensor, mask: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Per row r: ``x[r, Q] = G[Q, Q]^-1 rhs[r, Q]`` with ``Q = mask[r]``, and 0 off ``Q``.

    ``G`` is one SPD (b x b) matrix shared by all rows; ``mask`` (rows x b) bool; ``rhs`` (rows x b).
    Each row's set is gathered to the front (k = the largest set size), so the batched Cholesky
    is k x k, not b x b; shorter sets are padded with identity rows.
    """
    m, b = mask.shape
    out = torch.zeros_like(rhs)
    sizes = mask.sum(1)
    k = int(sizes.max()) if m else 0
    if k == 0:
        return out
    for sl in _row_chunks(m, k, G.element_size()):
        order = torch.argsort((~mask[sl]).to(torch.int8), dim=1, stable=True)[:, :k]
        valid = (torch.arange(k, device=mask.device).unsqueeze(0) < sizes[sl].unsqueeze(1))
        d = valid.to(G.dtype)
        M = G[order.unsqueeze(2), order.unsqueeze(1)] * d.unsqueeze(2) * d.unsqueeze(1)
        M.diagonal(dim1=-2, dim2=-1).add_(1.0 - d)
        r = rhs[sl].gather(1, order) * d
        L, info = torch.linalg.cholesky_ex(M)
        x = torch.cholesky_solve(r.unsqueeze(-1), L).squeeze(-1)
        bad = info != 0
        if bool(bad.any()):  # numerically indefinite submatrix: fall back to an LU solve there
            x[bad] = torch.linalg.solve(M[bad], r[bad].unsqueeze(-1)).squeeze(-1)
        out[sl] = torch.zeros_like(out[sl]).scatter_(1, order, x * d)
    return out


def mrp_update(w: torch.Tensor, G: torch.Tensor, mask: torch.Tensor):
    """Joint removal of each row's set ``mask[r]`` from ``w`` (rows x b), all b columns free.

    Returns ``(dw, loss)``: the optimal change (rows x b; ``w + dw`` is 0 on the mask) and
    ``L*(Q) = 1/2 w_Q S^-1 w_Q^T`` per row.
    """
    x = masked_spd_solve(G, mask, w)          # = w_Q S^-1 on Q, 0 elsewhere
    dw = -(x @ G)
    loss = 0.5 * (x * w).sum(1)
    return dw, loss


def nm_patterns(n: int, m: int, device=None) -> torch.Tensor:
    """All C(m, n) patterns as a (P x n) long tensor of the pruned positions, in lexicographic order."""
    return torch.tensor(list(itertools.combinations(range(m), n)), dtype=torch.long, device=device)


def pattern_operators(G: torch.Tensor, pats: torch.Tensor):
    """For one group's ``G`` (M x M) and patterns (P x N): ``S_p^-1`` (P x N x N) and
    ``T_p = S_p^-1 G[Q_p, :]`` (P x N x M), so that ``dw = - w_Q T_p`` and ``L = 1/2 w_Q S_p^-1 w_Q^T``.
    Works batched over groups too: ``G`` (k x M x M) gives (k x P x ...).
    """
    rows = G[..., pats, :]                              # (..., P, N, M)
    S = G[..., pats.unsqueeze(-1), pats.unsqueeze(-2)]  # (..., P, N, N)
    Sinv = torch.linalg.inv(S)
    return Sinv, Sinv @ rows


def refit_exact(w0: torch.Tensor, H: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """The least-squares optimum on a fixed mask: per row ``w_K = H[K, K]^-1 (H w0)[K]``, 0 on the mask.

    Cost ~ rows x (n^3 / 3): meant for small matrices and for tests; see :func:`refit_cg`.
    """
    return masked_spd_solve(H, ~pruned, w0 @ H)


def refit_cg(w0: torch.Tensor, H: torch.Tensor, pruned: torch.Tensor, x: torch.Tensor,
             iters: int = 20, hinv: torch.Tensor | None = None) -> torch.Tensor:
    """The same optimum approached by preconditioned conjugate gradients from ``x``.

    Minimises ``f(x) = 1/2 (x - w0) H (x - w0)^T`` over the kept entries of each row (rows are
    independent, so alpha and beta are per row). CG never increases ``f`` from one iterate to the
    next, so starting from a pruned solution it can only lower the layer error. Preconditioner:
    ``diag(H)^-1`` (Jacobi), or with ``hinv`` given, ``H^-1`` restricted to the kept entries
    (SPD on them; one more matmul per step, far fewer steps when inputs are correlated).
    """
    keep = pruned.logical_not().to(x.dtype)
    x = x * keep                        # a new tensor: the caller's x is left alone
    dinv = 1.0 / torch.diagonal(H)

    def precond(r, out=None):
        if hinv is not None:
            return torch.mul(r @ hinv, keep, out=out)
        return torch.mul(r, dinv, out=out)

    # m x n work per step: one GEMM, then in-place passes (the CG loop is memory-bound between
    # GEMMs on CPU, so temporaries cost as much as the arithmetic)
    r = (w0 - x) @ H                                     # negative gradient
    r.mul_(keep)
    z = precond(r)
    p = z.clone()
    Ap = torch.empty_like(p)
    rz = _rowdot(r, z)
    tiny = torch.finfo(x.dtype).tiny
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    for _ in range(iters):
        torch.matmul(p, H, out=Ap)
        Ap.mul_(keep)
        pAp = _rowdot(p, Ap)
        alpha = torch.where(pAp > 0, rz / pAp.clamp_min(tiny), zero)
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, Ap, value=-1.0)
        precond(r, out=z)
        rz_new = _rowdot(r, z)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(tiny), zero)
        p.mul_(beta).add_(z)
        rz = rz_new
    return x.mul_(keep)


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row dot products as a (rows x 1) column."""
    return torch.linalg.vecdot(a, b, dim=1).unsqueeze(1)
