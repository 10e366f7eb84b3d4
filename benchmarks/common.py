"""Helpers shared by the benchmarks: their arguments (the library's own parsers, so a pattern or
an option is spelled as on the command line), synthetic layer problems, timing, the Hessian
files of :mod:`benchmarks.collect_hessians`, and the JSON record each benchmark writes.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from apt.commands.common import parse_key_values
from apt.errors import AptError
from apt.io import write_json_atomic
from apt.paths import resources_dir
from apt.provenance import environment
from apt.pruning import Target, parse_target

PYTHON = ".venv/bin/python"


# ----------------------------------------------------------------------------------- arguments
def targets(spec: str, flag: str = "--patterns") -> list[Target]:
    """A comma-separated list of sparsity targets (``50%,0.6,2:4``) through
    :func:`apt.pruning.parse_target`, the spelling of the CLI and the pipeline."""
    out = []
    for item in spec.split(","):
        if item.strip():
            try:
                out.append(parse_target(item))
            except ValueError as exc:
                raise SystemExit(f"{flag} {item!r}: {exc}") from None
    return out


def key_values(items: list[str] | None, flag: str = "--opt") -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` -> dict through :func:`apt.commands.common.parse_key_values`
    (VALUE read as YAML, so JSON values read the same)."""
    try:
        return parse_key_values(items or [], flag)
    except AptError as exc:
        raise SystemExit(str(exc)) from None


def method_options(items: list[str] | None, flag: str = "--opt") -> dict[str, dict[str, Any]]:
    """``["METHOD.KEY=VALUE", ...]`` -> ``{METHOD: {KEY: VALUE}}`` (see :func:`key_values`)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in key_values(items, flag).items():
        method, _, name = key.partition(".")
        if not method or not name:
            raise SystemExit(f"{flag} {key}=...: expected METHOD.KEY=VALUE, e.g. apt.refit=true")
        out.setdefault(method, {})[name] = value
    return out


def variants(items: list[str] | None, flag: str = "--variants") -> dict[str, dict[str, Any]]:
    """``["NAME={...}", ...]`` -> ``{NAME: options}``, each value a mapping of solver options
    (JSON or YAML flow style; an empty value means no options)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in key_values(items, flag).items():
        value = {} if value is None else value
        if not isinstance(value, dict):
            raise SystemExit(f"{flag} {name}={value!r}: expected NAME={{option: value, ...}}, "
                             "e.g. 'd05={\"percdamp\": 0.05}'")
        out[name] = value
    return out


def shape_list(spec: str, flag: str = "--shapes") -> list[tuple[int, int]]:
    """``"4096x4096,11008x4096"`` -> ``[(4096, 4096), (11008, 4096)]`` (rows x inputs)."""
    out = []
    for item in spec.split(","):
        if not item.strip():
            continue
        parts = item.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise SystemExit(f"{flag} {item!r}: expected ROWSxCOLUMNS, e.g. 4096x4096")
        out.append((int(parts[0]), int(parts[1])))
    return out


def name_list(spec: str) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()]


# ------------------------------------------------------------------------ synthetic problems
def synthetic_problem(m: int, n: int, device: torch.device | str = "cpu", seed: int = 0):
    """Random W (m x n) and H = (2/T) X X^T, X = diag(s) Z + U V: log-normal feature scales
    plus a shared rank-64 component (correlated inputs), T = 2n tokens."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    t = 2 * n
    scale = torch.exp(torch.randn(n, 1, generator=g))
    x = scale * torch.randn(n, t, generator=g)
    x += torch.randn(n, 64, generator=g) @ torch.randn(64, t, generator=g) * 0.3
    x = x.to(device)
    h = (2.0 / t) * (x @ x.T)
    w = (torch.randn(m, n, generator=g) / math.sqrt(n)).to(device)
    return w, h


def conditioned_problem(m: int, n: int, seed: int = 0):
    """Random W (m x n) and H = X X^T / n, X = (I + G / sqrt(n)) Z with 2n tokens: mildly
    correlated inputs of similar scale (the timing problem of :mod:`benchmarks.apt_timing`)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, n, generator=g) / n ** 0.5 + torch.eye(n)) @ torch.randn(n, 2 * n,
                                                                                generator=g)
    return torch.randn(m, n, generator=g), (1.0 / n) * x @ x.T


class InputSource:
    """The input distribution of :func:`synthetic_problem` with its scales and mixing fixed, so
    that any number of fresh tokens can be drawn from it: ``x = s * z + 0.3 U v``."""

    def __init__(self, n: int, device: torch.device | str = "cpu", seed: int = 0) -> None:
        g = torch.Generator(device="cpu").manual_seed(seed)
        self.scale = torch.exp(torch.randn(n, 1, generator=g)).to(device)
        self.mix = torch.randn(n, 64, generator=g).to(device)

    def hessian(self, tokens: int, seed: int, chunk: int = 16384) -> torch.Tensor:
        """``(2 / T) sum x x^T`` over ``tokens`` fresh tokens, accumulated in chunks (float32)."""
        n, device = self.scale.shape[0], self.scale.device
        g = torch.Generator(device=device).manual_seed(seed)
        h = torch.zeros(n, n, device=device)
        done = 0
        while done < tokens:
            t = min(chunk, tokens - done)
            x = self.scale * torch.randn(n, t, generator=g, device=device)
            x += 0.3 * (self.mix @ torch.randn(64, t, generator=g, device=device))
            h.addmm_(x, x.T)
            done += t
        return h.mul_(2.0 / tokens)


# ----------------------------------------------------------------------------------- timing
def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work, so that a wall-clock interval covers it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[Any, float, float]:
    """``(fn(), wall seconds, CPU seconds of this process)``, the device synchronized around.
    CPU seconds are the comparable figure on a shared machine; on CUDA only wall time counts."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


# ---------------------------------------------------------------------------- Hessian files
def hessians_path(name: str = "hessians_smollm2.pt") -> Path:
    """Where :mod:`benchmarks.collect_hessians` writes its files (the offline resources)."""
    return resources_dir() / "bench" / name


def load_hessians(path: str | os.PathLike, layers: str | None = None
                  ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]]:
    """``({name: (weight, hessian)}, meta)`` of a file of :mod:`benchmarks.collect_hessians`,
    only the layers whose name matches the regex ``layers`` if given."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{path} not found: write it with `{PYTHON} -m "
                         "benchmarks.collect_hessians` (see benchmarks/README.md)")
    data = torch.load(path, map_location="cpu")
    meta = dict(data.pop("__meta__", None) or {})
    if layers:
        data = {k: v for k, v in data.items() if re.search(layers, k)}
        if not data:
            raise SystemExit(f"no layer of {path} matches {layers!r}")
    return data, meta


# ---------------------------------------------------------------------------------- records
def command(module: str, argv: list[str] | None) -> str:
    """The command line that reproduces this run, as ``python -m benchmarks.NAME ARGS``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([PYTHON, "-m", module, *args])


def jsonable(x: Any) -> Any:
    """``x`` with only JSON types (non-finite floats and other objects as strings)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    return str(x)


def write_report(path: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Write a benchmark's JSON atomically, with the environment (versions, commit, machine)."""
    report = {**report, "environment": report.get("environment") or environment()}
    return write_json_atomic(path, jsonable(report))
