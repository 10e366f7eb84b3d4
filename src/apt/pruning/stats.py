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
