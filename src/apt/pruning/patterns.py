"""Sparsity patterns: parsing and validation of ``sparsity`` / ``pattern`` arguments.

One spelling serves the command line, the pipeline's config and the benchmarks
(:func:`parse_target`): ``0.5``, ``"0.5"`` or ``"50%"`` for 50 % unstructured, ``"2:4"`` for
N:M. A :class:`Target` has a label for tables (``"50%"``, ``"2:4"``) and a token for file paths
(``"u50"``, ``"u62.5"``, ``"2of4"``), which :func:`parse_target` reads back.
"""

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

    ``pattern`` is ``"unstructured"`` (with ``sparsity``), ``"N:M"`` (the sparsity is implied;
    if given it must agree with N/M) or any spelling of :func:`parse_target` (``"50%"``).
    """
    if isinstance(pattern, str) and pattern.strip().lower() == "unstructured":
        if sparsity is None:
            raise ValueError("unstructured pruning needs a sparsity in (0, 1)")
        return Pattern(), check_sparsity(sparsity)
    target = parse_target(pattern)
    if sparsity is not None and abs(check_sparsity(sparsity) - target.sparsity) > 1e-9:
        what = f"pattern {target.pattern}" if target.pattern.structured else f"{pattern!r}"
        raise ValueError(f"{what} implies sparsity {target.sparsity:g}; got sparsity "
                         f"{sparsity!r} (omit it or pass {target.sparsity:g})")
    return target.pattern, target.sparsity


_TOKEN_U = re.compile(r"^u(\d+(?:\.\d+)?)$")
_TOKEN_NM = re.compile(r"^(\d+)of(\d+)$")


@dataclass(frozen=True)
class Target:
    """What to prune to: a pattern and the fraction of zeros (N/M for N:M)."""

    pattern: Pattern
    sparsity: float

    @property
    def label(self) -> str:
        """``"50%"``, ``"62.5%"`` or ``"2:4"``: how tables and logs name it."""
        return str(self.pattern) if self.pattern.structured else f"{_percent(self.sparsity)}%"

    @property
    def token(self) -> str:
        """``"u50"``, ``"u62.5"`` or ``"2of4"``: the file-path spelling (no ``%`` or ``:``)."""
        if self.pattern.structured:
            return f"{self.pattern.n}of{self.pattern.m}"
        return f"u{_percent(self.sparsity)}"

    @property
    def pattern_arg(self) -> str:
        """The ``pattern`` argument of :func:`apt.pruning.prune_matrix`."""
        return str(self.pattern)


def _percent(s: float) -> str:
    return f"{round(s * 100, 6):g}"


def parse_target(spec) -> Target:
    """``0.5`` / ``"0.5"`` / ``"50%"`` / ``"u50"`` -> 50 % unstructured; ``"2:4"`` / ``"2of4"``
    -> 2:4. Raises ``ValueError`` saying what is accepted."""
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, bool):
        raise ValueError(f"sparsity target {spec!r}: expected a fraction such as 0.5, a "
                         "percentage such as '50%', or 'N:M' such as '2:4'")
    if isinstance(spec, (int, float)):
        return Target(Pattern(), check_sparsity(spec))
    if not isinstance(spec, str):
        raise ValueError(f"sparsity target must be a number or a string; got {spec!r}")
    text = spec.strip()
    nm = _TOKEN_NM.match(text)
    if nm:
        text = f"{nm.group(1)}:{nm.group(2)}"
    if ":" in text:
        pat = parse_pattern(text)
        return Target(pat, pat.n / pat.m)
    u = _TOKEN_U.match(text)
    try:
        if u:
            value = float(u.group(1)) / 100
        elif text.endswith("%"):
            value = float(text[:-1]) / 100
        else:
            value = float(text)
    except ValueError:
        raise ValueError(f"sparsity target {spec!r}: expected a fraction such as 0.5, a "
                         "percentage such as '50%', or 'N:M' such as '2:4'") from None
    if not u and not text.endswith("%") and value >= 1:
        raise ValueError(f"sparsity target {spec!r}: a bare number is a fraction in (0, 1); "
                         f"write '{text}%' for a percentage")
    return Target(Pattern(), check_sparsity(value))
