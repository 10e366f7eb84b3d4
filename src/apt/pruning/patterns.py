"""Sparsity patterns: parsing and validation of ``sparsity`` / ``pattern`` arguments."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class Pattern:
    """``n`` zeros in every ``m`` consecutive inputs of each row, or unstructured (n = m = 0)."""

    n: int = 0
    m: int = 0

    @property
    def structured(self) -> bool:
        return self.m > 0

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.structured else "unstructured"


def parse_pattern(pattern: str) -> Pattern:
    """``"unstructured"`` or ``"N:M"`` with 0 < N < M. Raises ``ValueError`` otherwise."""
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a string, 'unstructured' or 'N:M'; got {pattern!r}")
    if pattern.strip().lower() == "unstructured":
        return Pattern()
    match = _NM.match(pattern)
    if not match:
        raise ValueError(f"pattern {pattern!r} is not 'unstructured' or 'N:M' with integers "
                         "N and M (for example '2:4' or '4:8')")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise ValueError(f"pattern {pattern!r}: N:M needs 0 < N < M (N zeros in every M "
                         "consecutive weights), for example '2:4' or '4:8'")
    return Pattern(n, m)


def check_sparsity(sparsity: float) -> float:
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise ValueError(f"sparsity must be a number in (0, 1); got {sparsity!r}") from None
    if not (math.isfinite(s) and 0.0 < s < 1.0):
        raise ValueError(f"sparsity must be in (0, 1) (the fraction of weights set to zero, "
                         f"e.g. 0.5); got {sparsity!r}")
    return s


def resolve(sparsity: float | None, pattern: str) -> tuple[Pattern, float]:
    """The pattern and the fraction of zeros it implies (N/M for N:M, ``sparsity`` otherwise).

    For N:M the sparsity is implied; if given it must agree with N/M.
    """
    pat = parse_pattern(pattern)
    if pat.structured:
        implied = pat.n / pat.m
        if sparsity is not None and abs(check_sparsity(sparsity) - implied) > 1e-9:
            raise ValueError(f"pattern {pat} implies sparsity {implied:g}; got sparsity "
                             f"{sparsity!r} (omit it or pass {implied:g})")
        return pat, implied
    if sparsity is None:
        raise ValueError("unstructured pruning needs a sparsity in (0, 1)")
    return pat, check_sparsity(sparsity)
