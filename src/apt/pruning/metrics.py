"""How far a pruned layer is from the dense one, measured on the calibration inputs."""

from __future__ import annotations

import torch


def layer_error_parts(weight: torch.Tensor, pruned: torch.Tensor,
                      hessian: torch.Tensor) -> tuple[float, float]:
    """``(tr(dW H dW^T), tr(W H W^T))``, i.e. ``||(W - W')X||^2`` and ``||WX||^2`` up to the
    common factor 2/T of ``H = (2/T) X X^T``. Computed in the Hessian's dtype (at least float32).
    """
    dtype = torch.promote_types(hessian.dtype, torch.float32)
    h = hessian.to(dtype)
    w = weight.to(device=h.device, dtype=dtype)
    dw = w - pruned.to(device=h.device, dtype=dtype)
    return float(((dw @ h) * dw).sum()), float(((w @ h) * w).sum())


def relative_error(weight: torch.Tensor, pruned: torch.Tensor, hessian: torch.Tensor) -> float:
    """``||(W - W')X||^2 / ||WX||^2`` (NaN when the layer's output is zero on the data)."""
    num, den = layer_error_parts(weight, pruned, hessian)
    return num / den if den > 0 else float("nan")
