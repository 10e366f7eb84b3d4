"""Paper-style tables from records: Markdown, CSV and LaTeX.

Perplexity: rows model x method (the dense reference first), columns pattern / sparsity x
dataset, as in the SparseGPT and Wanda papers; values of 1000 and more in ``1e3`` notation
(``1.7e4``). Zero-shot: rows model x method x pattern, columns the tasks' accuracy (%) and
their mean. Gap: APT's share of the SparseGPT-to-dense perplexity gap (:mod:`apt.report.gap`).
CSV files hold the same layout with unrounded numbers.

A variant pruned from several calibration seeds shows ``mean ± std`` over them (CSV: a mean
column and a ``std`` column); with one seed per variant the tables are as they always were.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from apt.report.gap import gap_closure
from apt.report.records import Record, Variant, short_model_name
from apt.report.seeds import Spread, seed_key, seed_values, spread

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


def format_share(value: float) -> str:
    """A share as a percentage with one decimal (``0.4567`` -> ``45.7``)."""
    if value is None or math.isnan(value):
        return MISSING
    return f"{100 * value:.1f}"


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
    rows: list[tuple[tuple[str, ...], list[float | Spread | None]]]
    fmt: object                                 # value -> str
    notes: list[str]

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(g, c) for g, cols in self.groups for c in cols]

    @property
    def has_spread(self) -> bool:
        return any(isinstance(c, Spread) for _, cells in self.rows for c in cells)

    def text(self, cell: float | Spread | None) -> str:
        if isinstance(cell, Spread):
            return f"{self.fmt(cell.mean)} ± {self.fmt(cell.std)}"
        return self.fmt(cell)


def _cell(by_seed: dict | None) -> float | Spread | None:
    """The table cell of a figure given per seed: the number itself for one seed."""
    if not by_seed:
        return None
    s = spread(by_seed)
    return s.values[0] if s.n == 1 else s


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
    value: dict[tuple[str, str, str, str], dict] = {}
    for (v, _, d), by_seed in seed_values(recs).items():
        value[(v.model, v.method, v.pattern_label, d)] = by_seed
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
                    cells.append(_cell(value.get(key)))
            rows.append(((model, _label(METHOD_LABELS, m)), cells))
    groups = [(p, [_label(DATASET_LABELS, d) for d in datasets]) for p in pattern_labels]
    table = Table(("Model", "Method"), groups, rows, format_ppl, [])
    table.notes = _notes(recs, "ppl", spread=table.has_spread)
    return table


def zeroshot_table(records: list[Record]) -> Table | None:
    recs = [r for r in records if r.kind == "zeroshot"]
    if not recs:
        return None
    tasks = sorted({t for r in recs for t in r.values if "/" not in t},
                   key=lambda t: (list(TASK_LABELS).index(t) if t in TASK_LABELS else 99, t))
    per_task: dict[Variant, dict[str, dict]] = {}
    for (v, _, t), by_seed in seed_values(recs).items():
        per_task.setdefault(v, {})[t] = by_seed
    rows = []
    for v in sorted(per_task, key=lambda v: (v.model, pattern_key(v), method_key(v.method))):
        accs = per_task[v]
        seeds = sorted({s for t in tasks for s in accs.get(t, {})}, key=seed_key)
        means = {}
        for s in seeds:   # the mean over tasks, per seed, where every task has a figure
            present = [c for t in tasks
                       if (c := accs.get(t, {}).get(s)) is not None and not math.isnan(c)]
            if len(present) == len(tasks):
                means[s] = sum(present) / len(present)
        cells = [_cell(accs.get(t)) for t in tasks]
        cells.append(_cell(means) if len(means) == len(seeds) else None)
        rows.append(((v.model, _label(METHOD_LABELS, v.method), v.pattern_label), cells))
    groups = [("accuracy (%)", [_label(TASK_LABELS, t) for t in tasks] + ["Mean"])]
    table = Table(("Model", "Method", "Pattern"), groups, rows, format_acc, [])
    table.notes = _notes(recs, "zeroshot", spread=table.has_spread)
    return table


def gap_table(records: list[Record]) -> Table | None:
    """Rows model x pattern, columns the datasets: the share closed, in %; over several seeds
    each dataset has mean, std, min and max."""
    cells = gap_closure(records)
    if not cells:
        return None
    datasets = sorted({c.dataset for c in cells}, key=dataset_key)
    several = any(c.closed.n > 1 for c in cells)
    by_row: dict[tuple[str, Variant], dict[str, Spread]] = {}
    for c in cells:
        by_row.setdefault((c.model, c.variant), {})[c.dataset] = c.closed
    rows = []
    for model, v in sorted(by_row, key=lambda k: (k[0], pattern_key(k[1]))):
        closed = by_row[(model, v)]
        seeds = sorted({s for x in closed.values() for s in x.seeds}, key=seed_key)
        row: list[float | Spread | None] = []
        for d in datasets:
            x = closed.get(d)
            if several:
                row += [None] * 4 if x is None else [x.mean, x.std, x.min, x.max]
            else:
                row.append(None if x is None else x.mean)
        rows.append(((model, v.pattern_label, ", ".join(str(s) for s in seeds)), row))
    labels = [_label(DATASET_LABELS, d) for d in datasets]
    if several:
        labels = [f"{d} {stat}" for d in labels for stat in ("mean", "std", "min", "max")]
    groups = [("share of the gap closed (%)", labels)]
    over = "; mean, sample std, min and max over the seeds" if several else ""
    notes = ["APT's share of the SparseGPT-to-dense perplexity gap, in %: (ppl SparseGPT - "
             "ppl APT) / (ppl SparseGPT - ppl Dense), per calibration seed (100: APT matches "
             f"the dense model; 0: no better than SparseGPT){over}"]
    notes += _notes([r for r in records if r.kind == "ppl"], "ppl")
    return Table(("Model", "Pattern", "Seeds"), groups, rows, format_share, notes)


def _notes(recs: list[Record], kind: str, spread: bool = False) -> list[str]:
    """Settings shared by the figures, read from the metrics files; ``spread``: the table
    shows mean ± std over seeds."""
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
    draws: dict[tuple, list] = {}
    for ds, n, L, seed in calib:
        draws.setdefault((ds, n, L), []).append(seed)
    for (ds, n, L), seeds in draws.items():
        which = (f"seed {seeds[0]}" if len(seeds) == 1 else
                 "seeds " + ", ".join(str(s) for s in sorted(seeds, key=seed_key)))
        notes.append(f"calibration: {n} x {L} tokens of {short_model_name(str(ds))}, {which}")
    if spread:
        notes.append("a ± b: mean ± sample standard deviation over the calibration seeds")
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
        lines.append("| " + " | ".join(list(names) + [t.text(c) for c in cells]) + " |")
    if t.notes:
        lines.append("")
        lines += [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


def _csv_number(c: float | None) -> str:
    return "" if c is None else repr(float(c))


def to_csv(t: Table) -> str:
    """Unrounded numbers; a table with figures over several seeds gets a ``std`` column after
    each value column (empty where a cell has one seed, e.g. the dense model)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = _header_cells(t)
    if not t.has_spread:
        w.writerow(head)
        for names, cells in t.rows:
            w.writerow(list(names) + [_csv_number(c) for c in cells])
        return buf.getvalue()
    k = len(t.row_names)
    w.writerow(head[:k] + [x for h in head[k:] for x in (h, f"{h} std")])
    for names, cells in t.rows:
        row = list(names)
        for c in cells:
            row += ([_csv_number(c.mean), _csv_number(c.std)] if isinstance(c, Spread)
                    else [_csv_number(c), ""])
        w.writerow(row)
    return buf.getvalue()


def _tex(text: str) -> str:
    for a, b in ((MISSING, "--"), ("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"),
                 ("_", r"\_"),
                 ("#", r"\#"), ("$", r"\$"), ("±", r"$\pm$")):
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
        out.append(" & ".join([_tex(n) for n in shown] + [_tex(t.text(c)) for c in cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if t.notes:
        out = [f"% {n}" for n in t.notes] + out
    return "\n".join(out) + "\n"
