"""Pure pruning solvers: a weight matrix and its layer statistics in, a pruned weight and mask out.

This package imports nothing from the rest of ``apt``. Entry point::

    res = prune_matrix(weight, hessian, method="apt", sparsity=0.5, pattern="unstructured")
    res.weight, res.mask, res.info

Adding a method is one module exposing ``prune(weight, hessian, pattern, sparsity, **options)``
and one entry in :data:`METHODS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from apt.pruning import apt, magnitude, sparsegpt, wanda
from apt.pruning.patterns import Pattern, Target, parse_pattern, parse_target, resolve
from apt.pruning.stats import HessianAccumulator

METHODS = {
    "magnitude": magnitude,
    "wanda": wanda,
    "sparsegpt": sparsegpt,
    "apt": apt,
}

__all__ = ["METHODS", "PruneResult", "prune_matrix", "default_percdamp", "HessianAccumulator", "Pattern",
           "parse_pattern", "Target", "parse_target"]


@dataclass
class PruneResult:
    weight: torch.Tensor          # pruned weight, same shape, dtype and device as the input
    mask: torch.Tensor            # bool, True where a weight was pruned
    info: dict[str, Any] = field(default_factory=dict)  # e.g. damping used, Cholesky retries


def _check_inputs(weight: torch.Tensor, hessian: torch.Tensor | None, needs_hessian: bool) -> None:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"weight must be a 2-D tensor (out x in); got "
                         f"{getattr(weight, 'shape', type(weight))}")
    if not torch.isfinite(weight).all():
        raise ValueError("weight contains NaN or Inf; prune a finite weight matrix")
    if hessian is None:
        if needs_hessian:
            raise ValueError("this method needs the Hessian (in x in) of the layer's inputs")
        return
    n = weight.shape[1]
    if not isinstance(hessian, torch.Tensor):
        raise ValueError(f"hessian must be a ({n} x {n}) tensor; got {type(hessian).__name__}")
    if hessian.shape != (n, n):
        raise ValueError(f"hessian must be ({n} x {n}) for a weight with {n} inputs; got "
                         f"{tuple(hessian.shape)}")
    if not torch.isfinite(hessian).all():
        raise ValueError("hessian contains NaN or Inf; a finite (in x in) matrix is needed: "
                         "check the calibration inputs")


def default_percdamp(method: str, n_inputs: int | None = None,
                     tokens: int | None = None) -> float:
    """The damping ``method`` uses when none is given: its module's ``default_damping`` of the
    layer's inputs and calibration tokens (APT's follows the calibration size), else its
    ``DEFAULT_PERCDAMP`` (0.01 for methods without a Hessian, which ignore it)."""
    module = METHODS[method]
    if hasattr(module, "default_damping"):
        return module.default_damping(n_inputs, tokens)
    return getattr(module, "DEFAULT_PERCDAMP", 0.01)


def prune_matrix(weight: torch.Tensor, hessian: torch.Tensor | None, method: str = "apt",
                 sparsity: float | None = 0.5, pattern: str = "unstructured", blocksize: int = 128,
                 percdamp: float | None = None, tokens: int | None = None,
                 **options: Any) -> PruneResult:
    """Prune one weight matrix (out x in) from the Hessian ``(2/T) sum x x^T`` of its inputs.

    ``pattern`` is ``"unstructured"`` (``sparsity`` of the weights set to zero) or ``"N:M"``
    (N zeros in every M consecutive inputs of each row; ``sparsity`` may be omitted).
    Computation runs in float32 or float64; the result has the dtype and device of ``weight``.
    ``percdamp`` (the damping) defaults to :func:`default_percdamp`: 0.01 x mean(diag H) for
    SparseGPT as in its reference code; for APT ``3 n / T`` within [0.05, 0.2] x each input's
    own ``H[j, j]``, with ``tokens`` the number of calibration tokens behind the Hessian (0.2
    where it is not given; :func:`apt.pruning.apt.damping_for`). ``options``: the method's own
    (APT: :class:`apt.pruning.apt_options.AptOptions`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    pat, frac = resolve(sparsity, pattern)
    if pat.structured and weight.dim() == 2 and weight.shape[1] % pat.m:
        raise ValueError(f"pattern {pat} needs the number of inputs ({weight.shape[1]}) to be a "
                         f"multiple of {pat.m}")
    module = METHODS[method]
    _check_inputs(weight, hessian, getattr(module, "NEEDS_HESSIAN", True))
    if blocksize < 1:
        raise ValueError(f"blocksize must be a positive integer; got {blocksize}")
    if tokens is not None and not (isinstance(tokens, int) and tokens >= 1):
        raise ValueError(f"tokens must be a positive integer (the calibration tokens behind "
                         f"the Hessian) or None; got {tokens!r}")
    if percdamp is None:
        percdamp = default_percdamp(method, weight.shape[1], tokens)
    if not 0 <= percdamp:
        raise ValueError(f"percdamp must be >= 0; got {percdamp}")
    w, mask, info = module.prune(weight, hessian, pat, frac, blocksize=blocksize,
                                 percdamp=percdamp, **options)
    return PruneResult(weight=w.to(dtype=weight.dtype, device=weight.device), mask=mask, info=info)
