"""The whole report: records -> tables, plots and the summary metrics file."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from apt.errors import AptError
from apt.io import write_json_atomic, write_text_atomic
from apt.report import tables as T
from apt.report.plots import plot_model
from apt.report.records import collect_records
from apt.report.seeds import mean_records
from apt.report.summary import summarize
from apt.report.cost import cost_table
from apt.report.zsdiff import zeroshot_diff_table


def build_report(metrics: Iterable[str | Path], out_dir: str | Path | None = None,
                 plots_dir: str | Path | None = None,
                 summary_path: str | Path | None = None) -> dict[str, list[str]]:
    """Write ``ppl.{md,csv,tex}`` / ``zeroshot.{md,csv,tex}`` / ``gap.{md,csv,tex}`` /
    ``zeroshot-diff.{md,csv,tex}`` / ``cost.{md,csv,tex}`` into ``out_dir`` (those with data; the gap needs dense,
    SparseGPT and APT perplexities, the zero-shot differences APT's accuracies and the dense
    model's or another method's at the same pattern), one or two PNGs per model into
    ``plots_dir`` (means over calibration seeds) and the summary JSON; return the paths."""
    records = collect_records(metrics)
    if not any(r.kind in ("ppl", "zeroshot") for r in records):
        raise AptError("no perplexity or zero-shot results among the metrics given")
    written: dict[str, list[str]] = {"tables": [], "plots": [], "summary": []}
    if out_dir is not None:
        out = Path(out_dir)
        for name, table in (("ppl", T.ppl_table(records)), ("zeroshot", T.zeroshot_table(records)),
                            ("gap", T.gap_table(records)),
                            ("zeroshot-diff", zeroshot_diff_table(records)),
                            ("cost", cost_table(records))):
            if table is None:
                continue
            for ext, render in (("md", T.to_markdown), ("csv", T.to_csv), ("tex", T.to_latex)):
                path = out / f"{name}.{ext}"
                write_text_atomic(path, render(table))
                written["tables"].append(str(path))
    if plots_dir is not None:
        pdir = Path(plots_dir)
        pdir.mkdir(parents=True, exist_ok=True)
        means = mean_records(records)
        for model in sorted({r.variant.model for r in means}):
            written["plots"] += [str(p) for p in plot_model(model, means, pdir)]
    if summary_path is not None:
        write_json_atomic(summary_path, summarize(records))
        written["summary"].append(str(summary_path))
    return written
