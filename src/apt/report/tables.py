"""Paper-style tables from records: Markdown, CSV and LaTeX.

Perplexity: rows model x method (the dense reference first), columns pattern / sparsity x
dataset, as in the SparseGPT and Wanda papers; values of 1000 and more in ``1e3`` notation
(``1.7e4``). Zero-shot: rows model x method x pattern, columns the tasks' accuracy (%) and
their mean. CSV files hold the same layout with unrounded numbers.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from apt.report.records import Record, Variant, short_model_name

METHOD_ORDER = ("dense", "magnitude", "wanda", "sparsegpt", "apt")
METHOD_LABELS = {"dense": "Dense", "magnitude": "Magnitude", "wanda": "Wanda",
                 "sparsegpt": "SparseGPT", "apt": "APT"}
DATASET_ORDER = ("wikitext2", "wiki", "ptb", "c4", "c4-sample")
DATASET_LABELS = {"wikitext2": "WikiText2", "ptb": "PTB", "c4": "C4"}
TASK_LABELS = {"boolq": "BoolQ", "rte": "RTE", "hellaswag": "HellaSwag", "winogrande": "WinoGrande",
               "arc_easy": "ARC-e", "arc_challenge": "ARC-c", "openbookqa": "OBQA",
               "piqa": "PIQA", "lambada_openai": "LAMBADA"}
MISSING = "–"


def format_ppl(value: float) -> str:
    """``27.66`` below 1000; ``1.7e4`` from 1000 on (one decimal, no '+', no leading zero)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if math.isinf(value):
        return "inf"
    if abs(value) < 1000:
        return f"{value:.2f}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def format_acc(value: float) -> str:
    if value is None or math.isnan(value):
        return MISSING
    return f"{100 * value:.2f}"


def method_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def dataset_key(name: str) -> tuple[int, str]:
    return (DATASET_ORDER.index(name) if name in DATASET_ORDER else len(DATASET_ORDER), name)


def pattern_key(v: Variant) -> tuple[int, float, str]:
    """Dense first, then unstructured by sparsity, then N:M by implied sparsity and M."""
    if v.method == "dense":
        return (0, 0.0, "")
    return (2 if v.structured else 1, v.sparsity, v.pattern)


@dataclass
class Table:
    """A table of strings and raw numbers with a two-level column header."""

    row_names: tuple[str, ...]                  # e.g. ("Model", "Method")
    groups: list[tuple[str, list[str]]]         # [(group label, [column labels])]
    rows: list[tuple[tuple[str, ...], list[float | None]]]
    fmt: object                                 # value -> str
    notes: list[str]

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(g, c) for g, cols in self.groups for c in cols]


def _label(mapping: dict[str, str], name: str) -> str:
    return mapping.get(name, name)


def ppl_table(records: list[Record]) -> Table | None:
    recs = [r for r in records if r.kind == "ppl"]
    if not recs:
        return None
    datasets = sorted({d for r in recs for d in r.values}, key=dataset_key)
    patterns = sorted({r.variant for r in recs if r.variant.method != "dense"},
                      key=pattern_key)
    pattern_labels: list[str] = []
    for v in patterns:
        if v.pattern_label not in pattern_labels:
            pattern_labels.append(v.pattern_label)
    if not pattern_labels:
        pattern_labels = ["dense"]
    value: dict[tuple[str, str, str, str], float] = {}
    for r in recs:
        for d, x in r.values.items():
            value[(r.variant.model, r.variant.method, r.variant.pattern_label, d)] = x
    rows = []
    for model in sorted({r.variant.model for r in recs}):
        methods = sorted({r.variant.method for r in recs if r.variant.model == model},
                         key=method_key)
        for m in methods:
            cells = []
            for p in pattern_labels:
                for d in datasets:
                    # the dense reference is the same in every pattern group
                    key = (model, m, "dense" if m == "dense" else p, d)
                    cells.append(value.get(key))
            rows.append(((model, _label(METHOD_LABELS, m)), cells))
    groups = [(p, [_label(DATASET_LABELS, d) for d in datasets]) for p in pattern_labels]
    return Table(("Model", "Method"), groups, rows, format_ppl, _notes(recs, "ppl"))


def zeroshot_table(records: list[Record]) -> Table | None:
    recs = [r for r in records if r.kind == "zeroshot"]
    if not recs:
        return None
    tasks = sorted({t for r in recs for t in r.values if "/" not in t},
                   key=lambda t: (list(TASK_LABELS).index(t) if t in TASK_LABELS else 99, t))
    rows = []
    for r in sorted(recs, key=lambda r: (r.variant.model, pattern_key(r.variant),
                                         method_key(r.variant.method))):
        cells = [r.values.get(t) for t in tasks]
        present = [c for c in cells if c is not None and not math.isnan(c)]
        cells.append(sum(present) / len(present) if len(present) == len(tasks) else None)
        v = r.variant
        rows.append(((v.model, _label(METHOD_LABELS, v.method), v.pattern_label), cells))
    groups = [("accuracy (%)", [_label(TASK_LABELS, t) for t in tasks] + ["Mean"])]
    return Table(("Model", "Method", "Pattern"), groups, rows, format_acc, _notes(recs, "zeroshot"))


def _notes(recs: list[Record], kind: str) -> list[str]:
    """Settings shared by the figures, read from the metrics files."""
    notes: list[str] = []
    if kind == "ppl":
        seen = sorted({(r.settings.get("seqlen"), r.settings.get("max_windows"),
                        r.settings.get("windows")) for r in recs}, key=str)
        for seqlen, max_windows, windows in seen:
            limit = f"first {max_windows} windows" if max_windows else "all windows"
            notes.append(f"perplexity: windows of {seqlen} tokens, {limit} ({windows} evaluated)")
    else:
        limits = sorted({str(r.settings.get("limit")) for r in recs})
        notes.append("zero-shot accuracy (lm-eval `acc`), items per task: "
                     + ", ".join("all" if x == "None" else x for x in limits))
    calib = sorted({(c.get("dataset") or c.get("source"), c.get("nsamples"), c.get("seqlen"),
                     c.get("seed"))
                    for r in recs if isinstance(c := r.settings.get("calibration"), dict)}, key=str)
    for ds, n, L, seed in calib:
        notes.append(f"calibration: {n} x {L} tokens of {short_model_name(str(ds))}, seed {seed}")
    return notes


def _header_cells(t: Table) -> list[str]:
    if len(t.groups) == 1:
        return list(t.row_names) + t.groups[0][1]
    return list(t.row_names) + [f"{g} {c}" for g, c in t.columns]


def to_markdown(t: Table) -> str:
    head = _header_cells(t)
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join([":---"] * len(t.row_names) + ["---:"] * len(t.columns)) + "|"]
    for names, cells in t.rows:
        lines.append("| " + " | ".join(list(names) + [t.fmt(c) for c in cells]) + " |")
    if t.notes:
        lines.append("")
        lines += [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_header_cells(t))
    for names, cells in t.rows:
        w.writerow(list(names) + ["" if c is None else repr(float(c)) for c in cells])
    return buf.getvalue()


def _tex(text: str) -> str:
    for a, b in ((MISSING, "--"), ("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"),
                 ("_", r"\_"),
                 ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def to_latex(t: Table) -> str:
    """A booktabs table: one column group per pattern, with a rule under each group."""
    k = len(t.row_names)
    spec = "l" * k + "".join("r" * len(cols) for _, cols in t.groups)
    out = [r"\begin{tabular}{" + spec + "}", r"\toprule"]
    if len(t.groups) > 1 or t.groups[0][0]:
        cells, rules, col = [""] * k, [], k + 1
        for g, cols in t.groups:
            cells.append(rf"\multicolumn{{{len(cols)}}}{{c}}{{{_tex(g)}}}")
            rules.append(rf"\cmidrule(lr){{{col}-{col + len(cols) - 1}}}")
            col += len(cols)
        out += [" & ".join(cells) + r" \\", " ".join(rules)]
    out.append(" & ".join([_tex(n) for n in t.row_names]
                          + [_tex(c) for _, c in t.columns]) + r" \\")
    out.append(r"\midrule")
    previous = None
    for names, cells in t.rows:
        shown = list(names)
        if previous is not None and names[0] != previous:
            out.append(r"\midrule")
        if names[0] == previous:
            shown[0] = ""
        previous = names[0]
        out.append(" & ".join([_tex(n) for n in shown] + [_tex(t.fmt(c)) for c in cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if t.notes:
        out = [f"% {n}" for n in t.notes] + out
    return "\n".join(out) + "\n"
