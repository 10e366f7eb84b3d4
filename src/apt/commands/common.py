"""Argument checks shared by several commands."""

from __future__ import annotations

from apt.errors import AptError


def parse_device(name: str):
    """``--device`` as a torch.device: cpu, cuda or cuda:N, checked against this machine."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise AptError(f"--device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AptError(f"--device {name}: CUDA is not available on this machine; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AptError(f"--device {name}: only {torch.cuda.device_count()} CUDA devices")
    elif device.type != "cpu":
        raise AptError(f"--device {name!r}: expected cpu, cuda or cuda:N")
    return device
