"""Argument checks shared by several commands."""

from __future__ import annotations

from typing import Any

from apt.errors import AptError


def parse_key_values(raw: Any, flag: str = "--option") -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (each VALUE read as YAML: numbers, booleans, null, lists) or a
    mapping (from a YAML config) -> ``{KEY: VALUE}``. The one parser of KEY=VALUE arguments,
    for the commands and the benchmarks."""
    import yaml

    if raw is None:
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    if isinstance(raw, str):
        raw = [raw]
    out: dict[str, Any] = {}
    for item in raw:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise AptError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


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
