"""Aggregate metrics JSONs into paper-style tables, plots and one summary file.

INTERFACE: ``build_report(metric_paths, out_dir, plots_dir, summary_path) -> dict`` (what was
written). Pieces: :mod:`records` (JSON files -> flat records, settings read from inside the
files), :mod:`seeds` (figures over calibration seeds: mean, std, min, max), :mod:`gap` (APT's
share of the SparseGPT-to-dense perplexity gap), :mod:`tables` (Markdown / CSV / LaTeX),
:mod:`zsdiff` (APT's zero-shot accuracy minus the others'), :mod:`uncertainty` (standard errors
over perplexity windows and zero-shot items), :mod:`plots` (matplotlib PNGs), :mod:`summary`
(nested metrics JSON for ``dvc metrics``).
"""

from apt.report.records import Record, collect_records, load_records
from apt.report.build import build_report
from apt.report.gap import gap_closed, gap_closure
from apt.report.seeds import Spread
from apt.report.tables import format_ppl

__all__ = ["Record", "collect_records", "load_records", "build_report", "format_ppl",
           "gap_closed", "gap_closure", "Spread"]
