"""Unstructured mask rules for one block of APT (``shared/method.md``, APT item 4).

Every rule sees the block's current weights ``w`` (rows x b), ``A = R[g, g]`` (upper, b x b),
``G = A^T A = (H[U, U])^-1[g, g]`` and the number of weights to prune in the whole block, and
returns a bool mask (True = prune) with exactly that many entries.

* ``score``: SparseGPT's rule, ``w^2 / A_jj^2`` thresholded over the whole block.
* ``greedy``: OBC's exact greedy per row (remove the weight of least joint loss, downdate the
  row's inverse, repeat), with per-row counts taken from the score rule (``counts="score"``) or
  spread over rows by the greedy increments themselves (``counts="adaptive"``).
* ``swap``: start from another rule and exchange one pruned and one kept weight per row while
  that lowers ``L*`` (the exact change of the joint loss of the pair, from the Gram matrix).
"""

from __future__ import annotations

import torch

from apt.pruning.masks import lowest_k
from apt.pruning.mrp import _row_chunks


def score_mask(w: torch.Tensor, A: torch.Tensor, G: torch.Tensor, count: int,
               denom: torch.Tensor | None = None) -> torch.Tensor:
    """Lowest ``w^2 / denom`` over the block; ``denom`` defaults to SparseGPT's ``A_jj^2``."""
    if denom is None:
        denom = torch.diagonal(A).pow(2)
    return lowest_k(w.pow(2) / denom.unsqueeze(0), count)


def _prefix_mask(order: torch.Tensor, counts: torch.Tensor, b: int) -> torch.Tensor:
    k = order.shape[1]
    take = torch.arange(k, device=order.device).unsqueeze(0) < counts.unsqueeze(1)
    mask = torch.zeros(order.shape[0], b, dtype=torch.bool, device=order.device)
    mask.scatter_(1, order, take)
    return mask


def greedy_order(w: torch.Tensor, G: torch.Tensor, steps: int):
    """OBC greedy per row for ``steps`` removals: (order (rows x steps), increments (rows x steps))."""
    m, b = w.shape
    order = torch.zeros(m, steps, dtype=torch.long, device=w.device)
    incs = torch.zeros(m, steps, dtype=w.dtype, device=w.device)
    for sl in _row_chunks(m, b, G.element_size(), factor=3):
        ww = w[sl].clone()
        Gi = G.expand(ww.shape[0], b, b).clone()
        removed = torch.zeros_like(ww, dtype=torch.bool)
        ar = torch.arange(ww.shape[0], device=w.device)
        inf = torch.tensor(float("inf"), dtype=w.dtype, device=w.device)
        for t in range(steps):
            d = torch.diagonal(Gi, dim1=1, dim2=2)
            loss = torch.where(removed, inf, ww.pow(2) / d.clamp_min(torch.finfo(w.dtype).tiny))
            val, q = loss.min(1)
            order[sl, t] = q
            incs[sl, t] = 0.5 * val
            gq = Gi[ar, q]                                   # (r, b)
            dq = gq.gather(1, q.unsqueeze(1))                # (r, 1)
            ww = ww - (ww.gather(1, q.unsqueeze(1)) / dq) * gq
            Gi = Gi - gq.unsqueeze(2) * (gq / dq).unsqueeze(1)
            removed[ar, q] = True
    return order, incs


def greedy_mask(w, A, G, count, counts: str = "score", denom=None) -> torch.Tensor:
    m, b = w.shape
    if count == 0:
        return torch.zeros_like(w, dtype=torch.bool)
    if counts == "score":
        per_row = score_mask(w, A, G, count, denom).sum(1)
        order, _ = greedy_order(w, G, int(per_row.max()))
        return _prefix_mask(order, per_row, b)
    if counts != "adaptive":
        raise ValueError(f"counts must be 'score' or 'adaptive'; got {counts!r}")
    avg = count / m
    steps = min(b, int(max(avg * 1.5, avg + 8)) + 1)
    order, incs = greedy_order(w, G, steps)
    # the increments of a row, made nondecreasing, priced against every other row's
    incs = torch.cummax(incs, dim=1).values
    sel = lowest_k(incs, min(count, incs.numel()))
    per_row = sel.sum(1)
    return _prefix_mask(order, per_row, b)


def swap_deltas(w: torch.Tensor, G: torch.Tensor, mask: torch.Tensor):
    """Exact change of ``L*`` for every 1-swap of every row: ``delta[r, q, c]`` for pruned q and
    kept c (``inf`` elsewhere), and the current ``L*`` per row. Cost ~ rows x 2 b^3."""
    d = mask.to(G.dtype)
    M = G.unsqueeze(0) * d.unsqueeze(2) * d.unsqueeze(1)
    M.diagonal(dim1=-2, dim2=-1).add_(1.0 - d)
    P = torch.cholesky_inverse(torch.linalg.cholesky(M)) * d.unsqueeze(2) * d.unsqueeze(1)
    a = (P @ (w * d).unsqueeze(-1)).squeeze(-1)        # multipliers, 0 off Q
    wp = w - a @ G                                     # weights after the joint removal
    Gam = P @ G                                        # Gam[q, c] = (P G[Q, c])_q
    Gpd = torch.diagonal(G).unsqueeze(0) - (G.unsqueeze(0) * Gam).sum(1)   # G'_cc
    tiny = torch.finfo(G.dtype).tiny
    Pqq = torch.diagonal(P, dim1=1, dim2=2)
    Pqs = Pqq.clamp_min(tiny)
    rem = -0.5 * a.pow(2) / Pqs                                          # (r, q)
    num = wp.unsqueeze(1) + (a / Pqs).unsqueeze(2) * Gam                 # (r, q, c)
    den = (Gpd.unsqueeze(1) + Gam.pow(2) / Pqs.unsqueeze(2)).clamp_min(tiny)
    delta = rem.unsqueeze(2) + 0.5 * num.pow(2) / den
    valid = mask.unsqueeze(2) & ~mask.unsqueeze(1)
    delta = torch.where(valid, delta, torch.full_like(delta, float("inf")))
    return delta, 0.5 * (a * w).sum(1)


def swap_refine(w: torch.Tensor, G: torch.Tensor, mask: torch.Tensor, iters: int) -> torch.Tensor:
    """Up to ``iters`` rounds of one 1-swap per row (pruned q <-> kept c) that lowers ``L*``.

    With ``P = S^-1``, ``a = w_Q P``, the current weights ``w'`` after the joint removal of ``Q``
    and the downdated inverse ``G' = G - G[:, Q] P G[Q, :]``, un-pruning q costs
    ``-a_q^2 / (2 P_qq)`` and moves ``w'`` and ``G'`` by a rank one term with
    ``g = (P G[Q, c])_q``; pruning c then costs ``(w'_c + a_q g / P_qq)^2 / 2(G'_cc + g^2 / P_qq)``.
    """
    m, b = w.shape
    mask = mask.clone()
    for sl in _row_chunks(m, b, G.element_size(), factor=4):
        ww = w[sl]
        mk = mask[sl]
        active = torch.ones(ww.shape[0], dtype=torch.bool, device=w.device)
        for _ in range(iters):
            delta, loss = swap_deltas(ww, G, mk)
            best, idx = delta.flatten(1).min(1)
            do = active & (best < -1e-9 * loss.abs().clamp_min(torch.finfo(G.dtype).tiny))
            if not bool(do.any()):
                break
            rows = do.nonzero().squeeze(1)
            q, c = idx[rows] // b, idx[rows] % b
            mk[rows, q] = False
            mk[rows, c] = True
            active = do
        mask[sl] = mk
    return mask
