"""APT's share of the SparseGPT-to-dense perplexity gap, per model, pattern and dataset.

``closed = (ppl_SparseGPT - ppl_APT) / (ppl_SparseGPT - ppl_Dense)``: 1 when APT reaches the
dense model, 0 when it is no better than SparseGPT, negative when it is worse. It is computed per
calibration seed (SparseGPT and APT pruned from the same draw, against the one dense figure) and
then summarized over the seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from apt.report.records import Record, Variant
from apt.report.seeds import Spread, seed_values, spread

BASELINE, METHOD = "sparsegpt", "apt"


def gap_closed(ppl_baseline: float, ppl_method: float, ppl_dense: float) -> float:
    """The share of the baseline-to-dense gap the method closes (NaN when there is no gap)."""
    gap = ppl_baseline - ppl_dense
    if gap == 0 or not math.isfinite(gap):
        return math.nan
    return (ppl_baseline - ppl_method) / gap


@dataclass(frozen=True)
class GapCell:
    model: str
    variant: Variant           # the APT variant (its pattern orders the rows)
    dataset: str
    closed: Spread             # one value per seed that has both SparseGPT and APT


def gap_closure(records: Iterable[Record]) -> list[GapCell]:
    """Every (model, pattern, dataset) with a dense, a SparseGPT and an APT perplexity."""
    values = seed_values(r for r in records if r.kind == "ppl")
    cells = []
    for (variant, _, dataset), apt in values.items():
        if variant.method != METHOD:
            continue
        base = values.get((Variant(variant.model, BASELINE, variant.pattern, variant.sparsity),
                           "ppl", dataset))
        dense = values.get((Variant(variant.model, "dense"), "ppl", dataset))
        seeds = [s for s in apt if base and s in base]
        if not dense or not seeds:
            continue
        ppl_dense = spread(dense).mean
        closed = spread({s: gap_closed(base[s], apt[s], ppl_dense) for s in seeds})
        cells.append(GapCell(variant.model, variant, dataset, closed))
    return cells
