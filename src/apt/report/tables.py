"""Paper-style tables from records: Markdown, CSV and LaTeX.

Perplexity: rows model x method (the dense reference first), columns pattern / sparsity x
dataset, as in the SparseGPT and Wanda papers; values of 1000 and more in ``1e3`` notation
(``1.7e4``). Zero-shot: rows model x method x pattern, columns the tasks' accuracy (%) and
their mean. Gap: APT's share of the SparseGPT-to-dense perplexity gap (:mod:`apt.report.gap`).
CSV files hold the same layout with unrounded numbers.

A variant pruned from several calibration seeds shows ``mean ± std`` over them (CSV: a mean
column and a ``std`` column); with one seed per variant the tables are as they always were.
Standard errors (:mod:`apt.report.uncertainty`), where the metrics files carry what they need:
the perplexity table notes their range, the zero-shot table has the SE of the mean over tasks,
the gap table each dataset's bootstrap SE over the windows. A variant pruned under OWL's
allocation is its own row ("SparseGPT + OWL"), and so is one pruned with method options ("APT
(admm_ramp=2)"), measured against the SparseGPT without options.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from apt.report.gap import gap_closure
from apt.report.records import Record, Variant, short_model_name
from apt.report.seeds import Spread, seed_key, seed_values, spread
from apt.report.uncertainty import RESAMPLES, Estimate, mean_se

METHOD_ORDER = ("dense", "magnitude", "wanda", "sparsegpt", "apt")
METHOD_LABELS = {"dense": "Dense", "magnitude": "Magnitude", "wanda": "Wanda",
                 "sparsegpt": "SparseGPT", "apt": "APT"}
DATASET_ORDER = ("wikitext2", "wiki", "ptb", "c4", "c4-sample")
DATASET_LABELS = {"wikitext2": "WikiText2", "ptb": "PTB", "c4": "C4"}
TASK_LABELS = {"boolq": "BoolQ", "rte": "RTE", "hellaswag": "HellaSwag", "winogrande": "WinoGrande",
               "arc_easy": "ARC-e", "arc_challenge": "ARC-c", "openbookqa": "OBQA",
               "piqa": "PIQA", "lambada_openai": "LAMBADA"}
ALLOCATION_LABELS = {"owl": "OWL"}
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


def method_label(v: Variant) -> str:
    """``SparseGPT``; ``SparseGPT + OWL`` for a non-uniform allocation; ``APT (admm_ramp=2)``
    for one pruned with method options."""
    label = METHOD_LABELS.get(v.method, v.method)
    if v.allocation != "uniform":
        label += f" + {ALLOCATION_LABELS.get(v.allocation, v.allocation)}"
    return f"{label} ({v.options})" if v.options else label


def variant_key(v: Variant) -> tuple:
    """Method order, the uniform allocation before the others, the defaults before options."""
    return (method_key(v.method), v.allocation != "uniform", v.allocation, v.options)


def task_key(name: str) -> tuple[int, str]:
    return (list(TASK_LABELS).index(name) if name in TASK_LABELS else 99, name)


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
    rows: list[tuple[tuple[str, ...], list[float | Spread | Estimate | None]]]
    fmt: object                                 # value -> str
    notes: list[str]

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(g, c) for g, cols in self.groups for c in cols]

    @property
    def has_spread(self) -> bool:
        return any(isinstance(c, Spread) for _, cells in self.rows for c in cells)

    @property
    def has_estimate(self) -> bool:
        return any(isinstance(c, Estimate) for _, cells in self.rows for c in cells)

    def text(self, cell: float | Spread | Estimate | None) -> str:
        if isinstance(cell, Spread):
            return f"{self.fmt(cell.mean)} ± {self.fmt(cell.std)}"
        if isinstance(cell, Estimate):
            return f"{self.fmt(cell.value)} ± {self.fmt(cell.se)}{'*' if cell.significant else ''}"
        return self.fmt(cell)


def seed_cell(by_seed: dict | None) -> float | Spread | None:
    """The table cell of a figure given per seed: the number itself for one seed."""
    if not by_seed:
        return None
    s = spread(by_seed)
    return s.values[0] if s.n == 1 else s


def label(mapping: dict[str, str], name: str) -> str:
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
        value[(v.model, v.method_id, v.pattern_label, d)] = by_seed
    rows = []
    for model in sorted({r.variant.model for r in recs}):
        methods = {r.variant.method_id: r.variant for r in recs if r.variant.model == model}
        for m in sorted(methods, key=lambda m: variant_key(methods[m])):
            cells = []
            for p in pattern_labels:
                for d in datasets:
                    # the dense reference is the same in every pattern group
                    key = (model, m, "dense" if m == "dense" else p, d)
                    cells.append(seed_cell(value.get(key)))
            rows.append(((model, method_label(methods[m])), cells))
    groups = [(p, [label(DATASET_LABELS, d) for d in datasets]) for p in pattern_labels]
    table = Table(("Model", "Method"), groups, rows, format_ppl, [])
    table.notes = settings_notes(recs, "ppl", spread=table.has_spread) + _ppl_se_notes(recs)
    return table


def _ppl_se_notes(recs: list[Record]) -> list[str]:
    ses = [x for r in recs for x in r.se.values() if math.isfinite(x)]
    if not ses:
        return []
    return [f"standard error over windows: {_range(ses, format_share)} % of each perplexity "
            "(the standard error of the mean NLL per token over the windows, i.e. of the "
            "log-perplexity)"]


def _range(xs: list[float], fmt) -> str:
    lo, hi = fmt(min(xs)), fmt(max(xs))
    return lo if lo == hi else f"{lo}-{hi}"


def zeroshot_table(records: list[Record]) -> Table | None:
    recs = [r for r in records if r.kind == "zeroshot"]
    if not recs:
        return None
    tasks = zeroshot_tasks(recs)
    per_task: dict[Variant, dict[str, dict]] = {}
    for (v, _, t), by_seed in seed_values(recs).items():
        per_task.setdefault(v, {})[t] = by_seed
    task_se = seed_values(recs, "se")
    with_se = any(r.se for r in recs)
    rows = []
    for v in sorted(per_task, key=lambda v: (v.model, pattern_key(v), variant_key(v))):
        accs = per_task[v]
        seeds = sorted({s for t in tasks for s in accs.get(t, {})}, key=seed_key)
        means = {s: m for s in seeds if (m := mean_over_tasks(accs, tasks, s)) is not None}
        cells = [seed_cell(accs.get(t)) for t in tasks]
        cells.append(seed_cell(means) if len(means) == len(seeds) else None)
        if with_se:
            cells.append(_none_if_nan(mean_acc_se(task_se, v, tasks)))
        rows.append(((v.model, method_label(v), v.pattern_label), cells))
    columns = [label(TASK_LABELS, t) for t in tasks] + ["Mean"] + (["SE"] if with_se else [])
    table = Table(("Model", "Method", "Pattern"), [("accuracy (%)", columns)], rows, format_acc, [])
    table.notes = settings_notes(recs, "zeroshot", spread=table.has_spread)
    if with_se:
        ses = [x for r in recs for x in r.se.values()]
        table.notes.append(f"per-task standard error (lm-eval `acc_stderr`): "
                           f"{_range(ses, format_acc)} points; SE: standard error of the mean "
                           "over tasks, sqrt(sum of the tasks' squared standard errors) / tasks"
                           + (" (each task's averaged over the seeds)" if table.has_spread else ""))
    return table


def zeroshot_tasks(recs: list[Record]) -> list[str]:
    """The tasks of zero-shot records (not their ``task/acc_norm`` figures), in paper order."""
    return sorted({t for r in recs for t in r.values if "/" not in t}, key=task_key)


def mean_over_tasks(accs: dict[str, dict], tasks: list[str], seed) -> float | None:
    """The mean accuracy of one seed over ``tasks`` (``accs``: task -> {seed: acc}); None
    unless every task has a figure."""
    present = [c for t in tasks if (c := accs.get(t, {}).get(seed)) is not None
               and not math.isnan(c)]
    return sum(present) / len(present) if present and len(present) == len(tasks) else None


def mean_acc_se(task_se: dict, v: Variant, tasks: list[str], seed=None) -> float:
    """Standard error of a variant's mean accuracy over ``tasks`` from each task's (one seed's,
    or averaged over the seeds when ``seed`` is None); NaN when a task has none."""
    per_task = []
    for t in tasks:
        by_seed = task_se.get((v, "zeroshot", t), {})
        if seed is not None:
            per_task.append(by_seed.get(seed))
        else:
            per_task.append(spread(by_seed).mean if by_seed else None)
    return mean_se(per_task)


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def gap_table(records: list[Record]) -> Table | None:
    """Rows model x pattern, columns the datasets: the share closed, in %; over several seeds
    each dataset has mean, std, min and max."""
    cells = gap_closure(records)
    if not cells:
        return None
    datasets = sorted({c.dataset for c in cells}, key=dataset_key)
    several = any(c.closed.n > 1 for c in cells)
    with_se = any(c.se is not None for c in cells)
    by_row: dict[tuple[str, Variant, str], dict[str, object]] = {}
    for c in cells:
        by_row.setdefault((c.model, c.variant, c.baseline_allocation), {})[c.dataset] = c
    rows = []
    for model, v, base in sorted(by_row, key=lambda k: (k[0], pattern_key(k[1]),
                                                        variant_key(k[1]), k[2] == "uniform")):
        found = by_row[(model, v, base)]
        seeds = sorted({s for c in found.values() for s in c.closed.seeds}, key=seed_key)
        row: list[float | Spread | None] = []
        for d in datasets:
            c = found.get(d)
            x = None if c is None else c.closed
            if several:
                row += [None] * 4 if x is None else [x.mean, x.std, x.min, x.max]
            else:
                row.append(None if x is None else x.mean)
            if with_se:
                row.append(None if c is None or c.se is None else _none_if_nan(c.se.mean))
        pattern = v.pattern_label
        marks = [v.options] if v.options else []
        if v.allocation != "uniform":
            vs = "" if base == v.allocation else f" vs {base}"
            marks.insert(0, f"{ALLOCATION_LABELS.get(v.allocation, v.allocation)}{vs}")
        if marks:
            pattern += f" ({'; '.join(marks)})"
        rows.append(((model, pattern, ", ".join(str(s) for s in seeds)), row))
    stats = ["mean", "std", "min", "max"] if several else [""]
    stats += ["SE (windows)"] if with_se else []
    labels = [" ".join(x for x in (label(DATASET_LABELS, d), stat) if x)
              for d in datasets for stat in stats]
    groups = [("share of the gap closed (%)", labels)]
    over = "; mean, sample std, min and max over the seeds" if several else ""
    notes = ["APT's share of the SparseGPT-to-dense perplexity gap, in %: (ppl SparseGPT - "
             "ppl APT) / (ppl SparseGPT - ppl Dense), per calibration seed (100: APT matches "
             f"the dense model; 0: no better than SparseGPT){over}"]
    if any(v.allocation != "uniform" for _, v, _ in by_row):
        notes.append("a pattern marked (OWL): APT and SparseGPT both under OWL's allocation; "
                     "(OWL vs uniform): APT under OWL's allocation, SparseGPT uniform")
    if any(v.options for _, v, _ in by_row):
        notes.append("a pattern marked with options (key=value): APT pruned with those options "
                     "(apt prune --option), SparseGPT with its defaults")
    if with_se:
        notes.append(f"SE (windows): bootstrap standard error of the share over the evaluation "
                     f"windows ({RESAMPLES} resamples of the windows, the same ones for dense, "
                     "SparseGPT and APT)"
                     + ("; with several seeds the mean of the per-seed standard errors"
                        if several else ""))
    notes += settings_notes([r for r in records if r.kind == "ppl"], "ppl")
    return Table(("Model", "Pattern", "Seeds"), groups, rows, format_share, notes)


def settings_notes(recs: list[Record], kind: str, spread: bool = False) -> list[str]:
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
    each value column (empty where a cell has one seed, e.g. the dense model), a table of
    estimates an ``se`` column."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = _header_cells(t)
    if not (t.has_spread or t.has_estimate):
        w.writerow(head)
        for names, cells in t.rows:
            w.writerow(list(names) + [_csv_number(c) for c in cells])
        return buf.getvalue()
    k = len(t.row_names)
    err = "std" if t.has_spread else "se"
    w.writerow(head[:k] + [x for h in head[k:] for x in (h, f"{h} {err}")])
    for names, cells in t.rows:
        row = list(names)
        for c in cells:
            if isinstance(c, Spread):
                row += [_csv_number(c.mean), _csv_number(c.std)]
            elif isinstance(c, Estimate):
                row += [_csv_number(c.value), _csv_number(c.se)]
            else:
                row += [_csv_number(c), ""]
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
