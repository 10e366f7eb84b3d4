"""What pruning cost, per model, pattern and method, from the prune reports.

``solver (s)``: the time of the solver itself, summed over the pruned modules (each module's
``time_s`` in the report: mask search and weight update, without loading, capture or saving);
``x SparseGPT``: that time over SparseGPT's at the same pattern, allocation and calibration draw
(the cost comparison APT is judged on); ``job (s)``: the whole `apt prune` run; ``peak RSS
(MB)``: the process's largest resident memory. Over several draws each is a mean ± std. Times
from jobs that shared a machine are rough; the ratio is fairer than either time.
"""

from __future__ import annotations

import math

from apt.report.records import Record, Variant
from apt.report.seeds import seed_values
from apt.report.tables import Table, seed_cell, method_label, pattern_key, variant_key

BASELINE = "sparsegpt"
COLUMNS = (("solver_s", "solver (s)"), ("ratio", "x SparseGPT"), ("time_s", "job (s)"),
           ("rss_mb", "peak RSS (MB)"))


def format_cost(value: float | None) -> str:
    """Two decimals below 10 (ratios), one below 1000, none above."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"


def solver_ratio(values: dict, v: Variant) -> dict:
    """Per seed: the variant's solver time over SparseGPT's at its pattern, allocation and seed."""
    base = values.get((Variant(v.model, BASELINE, v.pattern, v.sparsity, v.allocation),
                       "prune", "solver_s"), {})
    mine = values.get((v, "prune", "solver_s"), {})
    return {s: mine[s] / base[s] for s in mine if s in base and base[s] > 0}


def cost_table(records: list[Record]) -> Table | None:
    recs = [r for r in records if r.kind == "prune"]
    if not recs:
        return None
    values = seed_values(recs)
    variants = sorted({r.variant for r in recs},
                      key=lambda v: (v.model, pattern_key(v), variant_key(v)))
    rows = []
    for v in variants:
        cells = []
        for key, _ in COLUMNS:
            by_seed = solver_ratio(values, v) if key == "ratio" else values.get((v, "prune", key))
            cells.append(seed_cell(by_seed))
        rows.append(((v.model, v.pattern_label, method_label(v)), cells))
    notes = ["solver: the solver's own time summed over the pruned modules (no loading, capture "
             "or saving); x SparseGPT: over SparseGPT's at the same pattern and calibration "
             "draw; job: the whole apt prune run; peak RSS: the process's resident memory",
             "times from jobs that shared the machine's cores; a ± b: mean ± sample std over "
             "the calibration draws"]
    return Table(("Model", "Pattern", "Method"), [("cost", [c for _, c in COLUMNS])], rows,
                 format_cost, notes)
