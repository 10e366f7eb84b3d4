"""Mask search by ADMM with a gradual sparsity ramp: APT's default way of choosing the mask.

The layer problem with the mask free is ``min 1/2 (w - w0) H (w - w0)^T`` per row over ``w`` with
the pattern's zeros; its optimum for a *given* mask is the MRP optimum (``docs/method.md``), so
the hard part is the mask. ADMM keeps a dense iterate ``x`` and a sparse one ``z`` and moves
both until they agree, re-choosing the whole mask at every step from weights that already carry
the joint update of everything pruned so far, so a weight pruned early can come back. In the
coordinates ``x D`` with ``D = diag(H^-1)^(-1/2)`` (so that ``|x D|^2 = x^2 / [H^-1]_jj`` is the
OBS saliency), where ``H`` becomes ``Hn = D^-1 H D^-1``::

    z  = project(x + u)                       # keep the largest |x + u|: the pattern's mask
    u += x - z
    x  = (w0 Hn + rho (z - u)) (Hn + rho I)^-1  =  w0 + rho (z - u - w0) (Hn + rho I)^-1

one GEMM (rows x n x n) per step with an inverse computed once. Every step but the last only
steers the mask, so its GEMM may run in bfloat16 (``gemm_dtype``); the last, which sets the
weights returned, runs in the compute dtype. The pruned fraction rises to the target along a
cubic ramp over the first ``ramp`` steps (the gradual schedule of Boza, "Fast and Effective
Weight Update for Pruned Large Language Models", 2024, arXiv 2401.02938). Why these settings
(rho, steps, scaling, bfloat16): ``docs/decisions.md``.

Unstructured: the mask counts ``prune_count(s, m n)`` weights of the whole matrix at the end.
N:M: the candidates are the N smallest of each group; during the ramp only the smallest
candidates (over the matrix) are pruned, at the end all of them, so the final mask is exact N:M.
Dead inputs (``dead``) are always pruned first.
"""

from __future__ import annotations

import torch

from apt.pruning.hessian import factor_with_retries
from apt.pruning.masks import lowest_in_groups, lowest_k, prune_count
from apt.pruning.patterns import Pattern


def ramp_fraction(step: int, ramp: int, sparsity: float) -> float:
    """Pruned fraction at ``step`` (0-based): cubic rise to ``sparsity`` at step ``ramp - 1``."""
    if step + 1 >= ramp:
        return sparsity
    return sparsity * (1.0 - (1.0 - (step + 1) / ramp) ** 3)


def project_mask(scores: torch.Tensor, pattern: Pattern, fraction: float,
                 sparsity: float, dtype: torch.dtype = torch.bool,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """Mask (True or 1.0 = pruned, in ``dtype``) of the lowest ``scores`` for a pruned
    ``fraction`` on the way to ``sparsity`` (the pattern's own fraction for N:M). ``out``: as in
    :func:`apt.pruning.masks.lowest_k`, used by the unstructured and the ramp selections."""
    m, n = scores.shape
    k = prune_count(fraction, m * n)
    if not pattern.structured:
        return lowest_k(scores, k, dtype=dtype, out=out)
    final = fraction >= sparsity
    cand = lowest_in_groups(scores, pattern.n, pattern.m,
                            dtype=dtype if final else scores.dtype)
    if final:
        return cand
    # a finite stand-in above every score for the non-candidates keeps lowest_k on its fast
    # sampled path: scores + big (1 - cand), candidates' scores untouched
    lifted = torch.addcmul(scores, cand.neg_().add_(1.0), scores.max() + 1.0)
    return lowest_k(lifted, k, dtype=dtype, out=out)


def admm_search(weight: torch.Tensor, hessian: torch.Tensor, dead: torch.Tensor,
                pattern: Pattern, sparsity: float, iters: int = 10, ramp: int = 8,
                rho: float = 1.5, gemm_dtype: torch.dtype | None = None,
                exact_steps: int = 1, max_iters: int | None = None,
                stop_change: float = 1e-3, rho_growth: float = 1.0,
                check_every: int = 1, stats: dict | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """ADMM on ``1/2 (w - w0) H (w - w0)^T`` with the pattern's zeros.

    ``weight`` (m x n) and the damped ``hessian`` (n x n, positive definite) in the compute
    dtype; ``dead`` (n,) inputs that never fire. Returns ``(weight, mask)``: the sparse iterate
    (0 on the mask) and the mask. ``iters >= ramp >= 1``. ``gemm_dtype`` (e.g. bfloat16): the
    dtype of every step's GEMM but the last ``exact_steps`` (the last sets the weights
    returned), which run in the compute dtype (None: all in the compute dtype). The earlier
    steps only steer the mask.

    ``max_iters > iters``: after ``iters`` steps the search goes on while the mask still
    changes, every ``check_every`` steps comparing it with the last check's: it stops once
    fewer than ``stop_change`` x the pruned count changed (or at ``max_iters``), and until then
    multiplies rho by ``rho_growth`` at each check after the ramp (re-inverting
    ``Hn + rho I``), which pulls ``x`` onto ``z`` and settles the mask. The stopping step's
    GEMM runs in the compute dtype. ``stats``, if given, receives the steps run and the final
    rho.

    Masks live as 0 / 1 floats in the loop (``z = v - v * mask``): on CPU, comparisons that
    write floats and products with them are several times faster than bool masks and
    ``masked_fill`` (:func:`apt.pruning.masks._compare`).
    """
    if not (isinstance(iters, int) and isinstance(ramp, int) and iters >= ramp >= 1):
        raise ValueError(f"admm_iters and admm_ramp must be integers with admm_iters >= "
                         f"admm_ramp >= 1; got {iters!r} and {ramp!r}")
    if not rho > 0:
        raise ValueError(f"admm_rho must be > 0; got {rho!r}")
    if not (isinstance(exact_steps, int) and exact_steps >= 0):
        raise ValueError(f"admm_exact_steps must be an integer >= 0 (the final steps whose "
                         f"GEMM runs in the compute dtype); got {exact_steps!r}")
    extended = max_iters is not None and max_iters > iters
    last_step = max_iters - 1 if extended else iters - 1
    d = torch.diagonal(_inverse(hessian)).rsqrt()
    Hn = hessian / d / d.unsqueeze(1)

    def penalty_inverse(r):
        A = Hn.clone()
        A.diagonal().add_(r)
        A = torch.cholesky_inverse(torch.linalg.cholesky(A))
        return A, (A.to(gemm_dtype) if gemm_dtype not in (None, A.dtype) else None)

    A, A_low = penalty_inverse(rho)
    w0 = weight * d
    x = w0.clone()
    u = torch.zeros_like(x)
    v = x.clone()
    # buffers reused at every step (on CPU a fresh one of many MB is page-faulted in each time)
    scores = torch.empty_like(x)
    mask_buf = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    if A_low is not None:
        y_low = torch.empty(x.shape, dtype=A_low.dtype, device=x.device)
        r_low = torch.empty_like(y_low)
    prev = torch.empty_like(mask_buf) if extended else None
    mask = None
    dead_low = None
    if bool(dead.any()):     # dead inputs score -1, below every |v|: pruned first
        dead_low = dead.to(x.dtype).unsqueeze(0)
    step = 0
    while True:
        torch.abs(v, out=scores)
        if dead_low is not None:
            scores.addcmul_(scores, dead_low, value=-1.0).sub_(dead_low)
        mask = project_mask(scores, pattern, ramp_fraction(step, ramp, sparsity), sparsity,
                            dtype=torch.float32, out=mask_buf)
        final = step >= last_step
        new_rho = None
        if extended and step + 1 >= ramp and (step + 1 - ramp) % check_every == 0:
            if step + 1 > ramp:       # the mask of the last check had the target's count
                changed = float(torch.sub(mask, prev, out=scores).abs_().sum())
                if step + 1 >= iters and changed < stop_change * max(1.0, float(mask.sum())):
                    final = True
                elif rho_growth != 1.0:
                    new_rho = rho * rho_growth
            prev.copy_(mask)
        z = v.addcmul_(v, mask, value=-1.0)          # v with the mask's entries zeroed
        u.add_(x).sub_(z)
        if new_rho is not None and not final:    # scaled dual: rho u stays the same
            u.mul_(rho / new_rho)
            rho = new_rho
            A, A_low = penalty_inverse(rho)
        # (w0 Hn + rho (z - u)) A = w0 + rho (z - u - w0) A, since Hn A = I - rho A: one GEMM
        y = z.sub_(u).sub_(w0)
        low_ok = step < iters - exact_steps if not extended else not final
        if A_low is not None and low_ok:
            torch.mm(y_low.copy_(y), A_low, out=r_low)
            torch.add(w0, x.copy_(r_low), alpha=rho, out=x)    # exact widening first
        else:
            torch.addmm(w0, y, A, alpha=rho, out=x)
        v = torch.add(x, u, out=z)                          # z's buffer is free again
        if final:
            break
        step += 1
    if stats is not None:
        stats.update(steps=step + 1, rho_final=rho)
    return v.addcmul_(v, mask, value=-1.0).div_(d), mask.bool()


def _inverse(H: torch.Tensor, retries: int = 4) -> torch.Tensor:
    """``H^-1`` of a symmetric positive (semi-)definite ``H`` by Cholesky; where the factorization
    fails (an undamped, singular ``H``) retried with a damping of 1e-6, 1e-5, ... x mean(diag H)."""
    def inverse(Hd):
        L, info = torch.linalg.cholesky_ex(Hd)
        return torch.cholesky_inverse(L) if int(info) == 0 else None

    return factor_with_retries(H, torch.diagonal(H).mean(), 0.0, inverse, "mean", retries)[0]
