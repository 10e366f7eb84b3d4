"""Figures over calibration draws: the same variant pruned from several calibration seeds.

A pruned variant's seed is read from its prune report (``calibration.seed``); the dense model has
none. :func:`seed_values` gathers each figure per seed, :class:`Spread` summarizes it (mean,
sample standard deviation, min, max), and :func:`mean_records` gives one record per variant with
the means, for plots. With one seed per variant every mean is that seed's figure, unchanged.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable

from apt.errors import AptError
from apt.report.records import Record, Variant


@dataclass(frozen=True)
class Spread:
    """One figure over calibration seeds (``seeds[i]`` gave ``values[i]``)."""

    seeds: tuple[int | None, ...]
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return self.values[0] if self.n == 1 else math.fsum(self.values) / self.n

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1); NaN for one seed or a non-finite value."""
        if self.n < 2 or not all(math.isfinite(x) for x in self.values):
            return math.nan
        return statistics.stdev(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)


def seed_key(seed: int | None) -> tuple[int, int]:
    """Seed order: no seed (the dense model) first, then by number."""
    return (0, 0) if seed is None else (1, int(seed))


def spread(by_seed: dict[int | None, float]) -> Spread:
    """A figure given per seed, in seed order."""
    seeds = tuple(sorted(by_seed, key=seed_key))
    return Spread(seeds, tuple(by_seed[s] for s in seeds))


def seed_values(records: Iterable[Record], of: str = "values"
                ) -> dict[tuple[Variant, str, str], dict[int | None, Any]]:
    """``(variant, kind, key) -> {seed: value}`` (key: a dataset, a task, ``sparsity``...);
    ``of``: the records' field read, ``values``, ``se`` or ``windows``.

    Two results for the same variant, seed and key are refused: the report would otherwise keep
    one of them silently (for instance a folder holding two runs of the same setting)."""
    out: dict[tuple[Variant, str, str], dict[int | None, Any]] = {}
    sources: dict[tuple[Variant, str, str, int | None], str] = {}
    for r in records:
        for key, value in getattr(r, of).items():
            slot = out.setdefault((r.variant, r.kind, key), {})
            if r.seed in slot:
                first = sources[(r.variant, r.kind, key, r.seed)]
                v = r.variant
                which = "" if r.seed is None else f", calibration seed {r.seed}"
                raise AptError(f"two {r.kind} results for {v.model} {v.method_id} "
                               f"{v.pattern_label}{which}, {key}: {first} and {r.source}; "
                               "pass only one of them")
            slot[r.seed] = value
            sources[(r.variant, r.kind, key, r.seed)] = r.source
    return out


def several_seeds(records: Iterable[Record]) -> bool:
    """Whether some variant has results from more than one calibration seed."""
    return any(len(v) > 1 for v in seed_values(records).values())


def mean_records(records: Iterable[Record]) -> list[Record]:
    """One record per (variant, kind) whose values and standard errors are the means over seeds
    (first-seen order)."""
    records = list(records)
    merged: dict[tuple[Variant, str], Record] = {}
    for of in ("values", "se"):
        for (variant, kind, key), by_seed in seed_values(records, of).items():
            rec = merged.setdefault((variant, kind), Record(variant, kind, {}))
            getattr(rec, of)[key] = spread(by_seed).mean
    return list(merged.values())
