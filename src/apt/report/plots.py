"""Perplexity and accuracy against sparsity, one figure per model (PNG, matplotlib Agg).

Unstructured sparsities are joined by a line per method, starting from the dense model at 0 %;
N:M patterns are drawn at their implied sparsity as separate, labelled markers. A method under
OWL's allocation is its own, dashed line in its method's colour, one pruned with method options a
dotted one (dash-dotted under OWL). Error bars, where the metrics carry standard errors: one
standard error over the windows (perplexity) and the standard error of the mean over tasks
(accuracy).
"""

from __future__ import annotations

import math
from pathlib import Path

from apt.report.records import Record, Variant
from apt.report.tables import (DATASET_LABELS, dataset_key, method_key, method_label,
                               variant_key, zeroshot_tasks)
from apt.report.uncertainty import mean_se

_MARKERS = {"2:4": "s", "4:8": "D", "1:4": "^"}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


Point = tuple[float, float, float]   # (sparsity, y, standard error of y; NaN: none)


def _series(recs: list[Record], value) -> dict[Variant, dict[str, list[Point]]]:
    """A variant of each method and allocation -> {"line": [(sparsity, y, err)], "N:M": [...]}
    (dense added to every line). ``value(record)``: (y, err)."""
    out: dict[Variant, dict[str, list[Point]]] = {}
    first: dict[str, Variant] = {}
    dense = [(0.0, *value(r)) for r in recs if r.variant.method == "dense"]
    for r in recs:
        v = r.variant
        if v.method == "dense":
            continue
        y, err = value(r)
        if y is None or math.isnan(y):
            continue
        key = first.setdefault(v.method_id, v)
        entry = out.setdefault(key, {"line": list(dense)})
        entry.setdefault(v.pattern if v.structured else "line", []).append((v.sparsity, y, err))
    return out


def _draw(ax, series, logy: bool, dense: float | None = None) -> None:
    import matplotlib

    if dense is not None and not math.isnan(dense):
        ax.axhline(dense, linestyle="--", color="gray", linewidth=1, label="Dense")
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = sorted({v.method for v in series}, key=method_key)
    for v in sorted(series, key=variant_key):
        color = colors[methods.index(v.method) % len(colors)]
        label = method_label(v)
        style = {(False, False): "-", (True, False): "--", (False, True): ":",
                 (True, True): "-."}[(v.allocation != "uniform", bool(v.options))]
        for key, pts in sorted(series[v].items()):
            pts = sorted(pts)
            xs = [100 * x for x, _, _ in pts]
            ys = [y for _, y, _ in pts]
            errs = [0.0 if math.isnan(e) else e for _, _, e in pts]
            bars = errs if any(errs) else None
            if key == "line":
                ax.errorbar(xs, ys, yerr=bars, marker="o", color=color, linestyle=style,
                            capsize=2, label=label)
            else:
                ax.errorbar(xs, ys, yerr=bars, marker=_MARKERS.get(key, "P"), color=color,
                            markersize=7, markerfacecolor="none", linestyle="none", capsize=2,
                            label=f"{label} {key}")
    if not series:
        ax.set_xlim(-5, 100)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("sparsity (%)")
    ax.grid(True, alpha=0.3)


def plot_model(model: str, records: list[Record], plots_dir: Path) -> list[Path]:
    """The perplexity and (if any) accuracy figures of one model; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from apt.io import write_bytes_atomic

    written = []
    ppl = [r for r in records if r.kind == "ppl" and r.variant.model == model]
    datasets = sorted({d for r in ppl for d in r.values}, key=dataset_key)
    figs = []
    if datasets:
        fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6),
                                 squeeze=False)
        for ax, d in zip(axes[0], datasets):
            recs = [r for r in ppl if d in r.values]
            dense = [r.values[d] for r in recs if r.variant.method == "dense"]
            _draw(ax, _series(recs, lambda r: (r.values[d], r.values[d] * r.se.get(d, math.nan))),
                  logy=True, dense=dense[0] if dense else None)
            ax.set_title(f"{model}: {DATASET_LABELS.get(d, d)}")
            ax.set_ylabel("perplexity")
        figs.append((fig, axes[0][-1], plots_dir / f"{_safe(model)}-ppl.png"))
    zs = [r for r in records if r.kind == "zeroshot" and r.variant.model == model]
    if zs:
        def mean_acc(r):
            tasks = zeroshot_tasks([r])
            if not tasks:
                return None, math.nan
            accs = [r.values[t] for t in tasks]
            return sum(accs) / len(accs), mean_se([r.se.get(t) for t in tasks])

        fig, ax = plt.subplots(figsize=(5, 3.6))
        dense = [mean_acc(r)[0] for r in zs if r.variant.method == "dense"]
        _draw(ax, _series(zs, mean_acc), logy=False, dense=dense[0] if dense else None)
        ax.set_title(f"{model}: mean zero-shot accuracy")
        ax.set_ylabel("accuracy")
        figs.append((fig, ax, plots_dir / f"{_safe(model)}-acc.png"))
    import io

    for fig, legend_ax, path in figs:
        legend_ax.legend(fontsize="small")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        write_bytes_atomic(path, buf.getvalue())
        written.append(path)
    return written
