"""Hessian preparation shared by the second-order solvers (SparseGPT, APT).

``prepare`` applies the conventions of ``docs/method.md``: dead inputs (``diag(H) == 0``) get
``H[j, j] = 1`` and their weights are pruned outright; damping ``percdamp * unit * I`` is added,
where the unit is ``mean(diag H)`` (the method's convention, SparseGPT's reference), with
``unit="median"`` the median of the live inputs' ``diag H`` (APT's block-wise search), or with
``unit="diag"`` each input's own ``H[j, j]`` (a relative damping ``H + lambda diag(H)``, APT's
ADMM search; see ``docs/decisions.md``); the upper Cholesky factor ``R`` of ``H^-1`` (``Hinv = R^T R``) is
computed, and a failed factorization is retried with 10x the damping, a few times, each retry
recorded. It never falls back to an identity matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PreparedHessian:
    hessian: torch.Tensor      # damped H (n x n), compute dtype
    hinv_chol: torch.Tensor    # upper R with H^-1 = R^T R
    dead: torch.Tensor         # bool (n,), inputs that never fire
    damping: float             # the lambda finally used (relative to the unit)
    retries: list[float] = field(default_factory=list)  # damping values that failed
    unit: str = "mean"         # what lambda multiplies: mean or median of diag H

    def info(self) -> dict:
        return {"percdamp_used": self.damping, "damp_unit": self.unit,
                "cholesky_retries": list(self.retries), "dead_inputs": int(self.dead.sum())}


def compute_dtype(n: int, device: torch.device) -> torch.dtype:
    """float64 where cheap enough (CPU, or small n), else float32."""
    return torch.float64 if (device.type == "cpu" or n <= 4096) else torch.float32


def upper_chol_of_inverse(H: torch.Tensor) -> torch.Tensor | None:
    """Upper triangular ``R`` with ``H^-1 = R^T R``, or None if ``H`` is not positive definite.

    With the flip ``P`` (reversal of rows and columns), ``P H P = L L^T`` gives
    ``H^-1 = (P L^-1 P)^T (P L^-1 P)`` and ``P L^-1 P`` is upper triangular with a positive
    diagonal: the Cholesky factor the reference obtains as ``chol(cholesky_inverse(chol(H)))``,
    here from one factorization and one triangular solve, without forming ``H^-1``.
    """
    L, info = torch.linalg.cholesky_ex(H.flip(0, 1))
    if int(info) != 0:
        return None
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    R = torch.linalg.solve_triangular(L, eye, upper=False).flip(0, 1)
    if not bool(torch.isfinite(R).all()) or not bool((torch.diagonal(R) > 0).all()):
        return None
    return R


DAMP_UNITS = ("mean", "median", "diag")


def damping_unit(diag: torch.Tensor, dead: torch.Tensor, unit: str) -> torch.Tensor:
    """What ``percdamp`` multiplies: ``mean(diag H)`` (dead inputs counted as 1), the median
    of the live inputs' ``diag H`` (both scalars), or ``diag H`` itself (a vector: each input
    damped in proportion to its own activity)."""
    if unit == "mean":
        return diag.mean()
    if unit == "median":
        live = diag[~dead]
        return live.median() if live.numel() else diag.new_tensor(1.0)
    if unit == "diag":
        return diag.clone()
    raise ValueError(f"damp_unit must be one of {DAMP_UNITS}; got {unit!r}")


def _dead_set_to_one(hessian: torch.Tensor, dtype: torch.dtype | None):
    """A copy of ``hessian`` in the compute dtype with ``H[j, j] = 1`` for the dead inputs, and
    the dead mask."""
    dtype = dtype or compute_dtype(hessian.shape[0], hessian.device)
    H = hessian.to(dtype=dtype).clone()
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    return H, dead


def damped(hessian: torch.Tensor, percdamp: float, unit: str = "mean",
           dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H + percdamp * unit, dead)`` with dead inputs' ``H[j, j] = 1``, not factorized.

    Enough where nothing needs ``H^-1``: with ``percdamp > 0`` the result is positive definite
    whenever ``H`` is positive semi-definite (a positive diagonal added to a PSD matrix).
    """
    H, dead = _dead_set_to_one(hessian, dtype)
    torch.diagonal(H).add_(percdamp * damping_unit(torch.diagonal(H), dead, unit))
    return H, dead


def factor_with_retries(H: torch.Tensor, scale, percdamp: float, factor, unit: str = "mean",
                        max_retries: int = 4):
    """``factor(H + d * scale)`` for the damping ``d = percdamp``, then 10x that (1e-6 after
    0) while ``factor`` returns None (not positive definite), at most ``max_retries`` times.
    Returns ``(result, damped H, d used, the values that failed)``; the one retry loop of the
    second-order solvers. Never falls back to an identity matrix."""
    damp = percdamp
    retries: list[float] = []
    for _ in range(max_retries + 1):
        Hd = H.clone()
        torch.diagonal(Hd).add_(damp * scale)
        out = factor(Hd)
        if out is not None:
            return out, Hd, damp, retries
        retries.append(damp)
        damp = damp * 10 if damp > 0 else 1e-6
    raise ValueError(f"the Hessian is not positive definite even with damping {retries[-1]:g} x "
                     f"the {unit} of diag H; check the calibration inputs (NaN, too few tokens)")


def prepare(hessian: torch.Tensor, percdamp: float, max_retries: int = 4,
            dtype: torch.dtype | None = None, unit: str = "mean") -> PreparedHessian:
    """Dead inputs set to 1, the damping added, ``R`` factorized (see the module docstring)."""
    H, dead = _dead_set_to_one(hessian, dtype)
    scale = damping_unit(torch.diagonal(H), dead, unit)
    R, Hd, damp, retries = factor_with_retries(H, scale, percdamp, upper_chol_of_inverse, unit,
                                               max_retries)
    return PreparedHessian(Hd, R, dead, damp, retries, unit)
