"""APT's share of the SparseGPT-to-dense perplexity gap, per model, pattern and dataset.

``closed = (ppl_SparseGPT - ppl_APT) / (ppl_SparseGPT - ppl_Dense)``: 1 when APT reaches the
dense model, 0 when it is no better than SparseGPT, negative when it is worse. It is computed per
calibration seed (SparseGPT and APT pruned from the same draw, against the one dense figure) and
then summarized over the seeds. A model pruned under OWL's allocation is compared with the
baseline under the same allocation and, where there is one, with the uniform baseline too (the
reference the allocation has to beat: SparseGPT may do worse under OWL than without). Where the
perplexity files list their windows, each seed's closure has a bootstrap standard error over the
windows (:func:`apt.report.uncertainty.closure_se`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from apt.report.records import Record, Variant
from apt.report.seeds import Spread, seed_values, spread
from apt.report.uncertainty import closure_se

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
    se: Spread | None = None   # each seed's bootstrap standard error over the windows (None
    #                            when a file lacks its windows)
    baseline_allocation: str = "uniform"   # the SparseGPT it is measured against


def gap_closure(records: Iterable[Record]) -> list[GapCell]:
    """Every (model, pattern, allocation, dataset) with a dense, a SparseGPT and an APT
    perplexity: APT against SparseGPT under the same allocation, and an APT under another
    allocation also against the uniform SparseGPT."""
    ppl = [r for r in records if r.kind == "ppl"]
    values = seed_values(ppl)
    windows = seed_values(ppl, "windows")
    cells = []
    for key, apt in values.items():
        variant, _, dataset = key
        if variant.method != METHOD:
            continue
        dense_key = (Variant(variant.model, "dense"), "ppl", dataset)
        dense = values.get(dense_key)
        if not dense:
            continue
        ppl_dense = spread(dense).mean
        for allocation in dict.fromkeys((variant.allocation, "uniform")):
            base_key = (Variant(variant.model, BASELINE, variant.pattern, variant.sparsity,
                                allocation), "ppl", dataset)
            base = values.get(base_key)
            seeds = [s for s in apt if base and s in base]
            if not seeds:
                continue
            closed = spread({s: gap_closed(base[s], apt[s], ppl_dense) for s in seeds})
            cells.append(GapCell(variant.model, variant, dataset, closed,
                                 _window_se(windows, key, base_key, dense_key, seeds),
                                 allocation))
    return cells


def _window_se(windows, key, base_key, dense_key, seeds) -> Spread | None:
    """Per seed, the closure's bootstrap standard error (None unless all three list windows)."""
    apt, base, dense = (windows.get(k, {}) for k in (key, base_key, dense_key))
    if len(dense) != 1 or not all(s in apt and s in base for s in seeds):
        return None
    d = next(iter(dense.values()))
    return spread({s: closure_se(d, base[s], apt[s]) for s in seeds})
