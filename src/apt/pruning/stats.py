"""Layer statistics accumulated from calibration inputs: pure tensor code, usable from hooks."""

from __future__ import annotations

import torch


class HessianAccumulator:
    """Running ``H = (2/T) sum_t x_t x_t^T`` over the T tokens seen so far (no damping).

    ``add`` takes inputs of shape ``(..., n)`` (any leading dims are tokens). The sum is kept in
    ``dtype`` (float32 by default, float64 where the size allows) and rescaled as a running mean
    so that it never depends on the order in which batches arrive beyond rounding.
    """

    def __init__(self, n: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.n = n
        self.ntokens = 0
        self.hessian = torch.zeros(n, n, device=device, dtype=dtype)

    @torch.no_grad()
    def add(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.n:
            raise ValueError(f"input has {x.shape[-1]} features, expected {self.n} (the layer's "
                             "in_features)")
        x = x.reshape(-1, self.n).to(device=self.hessian.device, dtype=self.hessian.dtype)
        t = x.shape[0]
        if t == 0:
            return
        total = self.ntokens + t
        self.hessian.mul_(self.ntokens / total)
        self.hessian.addmm_(x.t(), x, alpha=2.0 / total)
        self.ntokens = total

    def input_sq_norms(self) -> torch.Tensor:
        """``||X_j||^2`` per input feature, up to the common factor 2/T: ``diag(H)``."""
        return torch.diagonal(self.hessian).clone()

    def input_norms(self) -> torch.Tensor:
        """``||X_j||_2`` per input feature over the tokens seen (Wanda's activation norm)."""
        return (torch.diagonal(self.hessian) * (self.ntokens / 2.0)).clamp_min(0).sqrt()


class CrossAccumulator(HessianAccumulator):
    """The Hessian of the pruned model's inputs ``x`` and their cross product with the dense
    model's inputs ``d`` of the same tokens, ``C = (2/T) sum_t d_t x_t^T``: what a layer needs
    to reconstruct the dense model's outputs ``W d`` from ``x`` (:func:`dense_target`)."""

    def __init__(self, n: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(n, device, dtype)
        self.cross = torch.zeros(n, n, device=device, dtype=dtype)

    @torch.no_grad()
    def add(self, x: torch.Tensor, dense: torch.Tensor) -> None:
        if dense.shape != x.shape:
            raise ValueError(f"dense inputs of shape {tuple(dense.shape)} for pruned inputs of "
                             f"shape {tuple(x.shape)}: the same tokens are needed")
        before = self.ntokens
        super().add(x)                   # checks the width, updates the Hessian and the count
        if self.ntokens == before:
            return
        d = dense.reshape(-1, self.n).to(device=self.cross.device, dtype=self.cross.dtype)
        xs = x.reshape(-1, self.n).to(device=self.cross.device, dtype=self.cross.dtype)
        self.cross.mul_(before / self.ntokens)
        self.cross.addmm_(d.t(), xs, alpha=2.0 / self.ntokens)


@torch.no_grad()
def dense_target(weight: torch.Tensor, hessian: torch.Tensor, cross: torch.Tensor,
                 ridge: float) -> torch.Tensor:
    """The weight ``W*`` whose outputs on the pruned model's inputs best match the dense
    model's: ``min ||W D - W* X||^2 + ridge sum_j H_jj ||W*_j - W_j||^2`` with ``H = (2/T) X^T X``
    and ``C = (2/T) D^T X``, i.e. ``W* = W (C + ridge diag H) (H + ridge diag H)^-1``.

    Then ``||W D - W' X||^2 = tr((W' - W*) H (W' - W*)^T) + const`` for every ``W'`` (without
    the ridge), so any Hessian pruner given ``(W*, H)`` minimises the dense-output error. The
    ridge (a fraction of each input's own ``H_jj``) keeps ``W*`` near ``W`` where ``H`` is
    nearly singular. Computed in float64; returned in ``weight``'s dtype."""
    H = hessian.to(torch.float64)
    reg = ridge * torch.diagonal(H)
    reg = torch.where(reg > 0, reg, torch.ones_like(reg))   # dead inputs: keep W there
    A = H.clone()
    A.diagonal().add_(reg)
    B = cross.to(torch.float64).clone()
    B.diagonal().add_(reg)
    W = weight.to(torch.float64)
    # W* A = W B  <=>  A W*^T = B^T W^T  (A symmetric)
    target = torch.cholesky_solve(B.t() @ W.t(), torch.linalg.cholesky(A)).t()
    return target.to(weight.dtype)


class NormAccumulator:
    """Running ``sum_t x_t^2`` per input feature (the squares Wanda's norms are made of), for
    statistics that need only ``||X_j||``: ``n`` numbers instead of an ``n x n`` Hessian."""

    def __init__(self, n: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float64) -> None:
        self.n = n
        self.ntokens = 0
        self.sq_sums = torch.zeros(n, device=device, dtype=dtype)

    @torch.no_grad()
    def add(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.n:
            raise ValueError(f"input has {x.shape[-1]} features, expected {self.n} (the layer's "
                             "in_features)")
        x = x.reshape(-1, self.n).to(device=self.sq_sums.device, dtype=self.sq_sums.dtype)
        self.sq_sums.add_(x.pow(2).sum(0))
        self.ntokens += x.shape[0]

    def input_sq_norms(self) -> torch.Tensor:
        """``||X_j||^2`` per input feature over the tokens seen."""
        return self.sq_sums.clone()
