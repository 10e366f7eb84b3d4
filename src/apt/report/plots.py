"""Perplexity and accuracy against sparsity, one figure per model (PNG, matplotlib Agg).

Unstructured sparsities are joined by a line per method, starting from the dense model at 0 %;
N:M patterns are drawn at their implied sparsity as separate, labelled markers.
"""

from __future__ import annotations

import math
from pathlib import Path

from apt.report.records import Record
from apt.report.tables import DATASET_LABELS, METHOD_LABELS, dataset_key, method_key

_MARKERS = {"2:4": "s", "4:8": "D", "1:4": "^"}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


def _series(recs: list[Record], value) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """method -> {"line": [(sparsity, y)], "N:M": [(sparsity, y)]} (dense added to every line)."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    dense = [(0.0, value(r)) for r in recs if r.variant.method == "dense"]
    for r in recs:
        v = r.variant
        if v.method == "dense":
            continue
        y = value(r)
        if y is None or math.isnan(y):
            continue
        entry = out.setdefault(v.method, {"line": list(dense)})
        entry.setdefault(v.pattern if v.structured else "line", []).append((v.sparsity, y))
    return out


def _draw(ax, series, logy: bool, dense: float | None = None) -> None:
    import matplotlib

    if dense is not None and not math.isnan(dense):
        ax.axhline(dense, linestyle="--", color="gray", linewidth=1, label="Dense")
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, method in enumerate(sorted(series, key=method_key)):
        color = colors[i % len(colors)]
        label = METHOD_LABELS.get(method, method)
        for key, pts in sorted(series[method].items()):
            pts = sorted(pts)
            xs = [100 * x for x, _ in pts]
            ys = [y for _, y in pts]
            if key == "line":
                ax.plot(xs, ys, marker="o", color=color, label=label)
            else:
                ax.scatter(xs, ys, marker=_MARKERS.get(key, "P"), color=color, s=50,
                           facecolors="none", label=f"{label} {key}")
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
            _draw(ax, _series(recs, lambda r: r.values[d]), logy=True,
                  dense=dense[0] if dense else None)
            ax.set_title(f"{model}: {DATASET_LABELS.get(d, d)}")
            ax.set_ylabel("perplexity")
        figs.append((fig, axes[0][-1], plots_dir / f"{_safe(model)}-ppl.png"))
    zs = [r for r in records if r.kind == "zeroshot" and r.variant.model == model]
    if zs:
        def mean_acc(r):
            accs = [v for k, v in r.values.items() if "/" not in k]
            return sum(accs) / len(accs) if accs else None

        fig, ax = plt.subplots(figsize=(5, 3.6))
        dense = [mean_acc(r) for r in zs if r.variant.method == "dense"]
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
