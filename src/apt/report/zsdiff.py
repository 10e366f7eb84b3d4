"""APT's zero-shot accuracy minus each other method's, with standard errors.

Rows model x APT variant (pattern, allocation) x the other: the dense model and every other
method pruned at the same pattern under the same allocation. Columns per task and for the mean
over tasks: the difference in points with its standard error, ``*`` where the difference is
larger than twice its standard error. Where both result files carry each item's score
(``apt eval zeroshot`` writes them) on the same items, the error is paired,
``sd(a_i - b_i) / sqrt(n)``: both models answer the same questions, so what makes an item easy
or hard cancels. Otherwise it is unpaired, ``sqrt(se_APT^2 + se_other^2)`` from lm-eval's
per-task standard errors, which overstates it. Both pruned models are taken from one
calibration draw, the lowest seed they share (the dense model has none).
"""

from __future__ import annotations

import math

from apt.report.gap import METHOD
from apt.report.records import Record, Variant
from apt.report.seeds import seed_key, seed_values
from apt.report.tables import (MISSING, TASK_LABELS, Table, format_acc, label, mean_acc_se,
                               mean_over_tasks, method_label, pattern_key, settings_notes,
                               variant_key, zeroshot_tasks)
from apt.report.uncertainty import Estimate, diff_se, paired_diff


def compared(variants: set[Variant]) -> list[tuple[Variant, Variant]]:
    """(APT variant, other) pairs: the dense model and the other methods at APT's pattern and
    allocation, in table order."""
    pairs = []
    for a in sorted((v for v in variants if v.method == METHOD),
                    key=lambda v: (v.model, pattern_key(v), variant_key(v))):
        same = (a.model, a.pattern, a.sparsity, a.allocation)
        others = [v for v in variants if v.method not in (METHOD, "dense")
                  and (v.model, v.pattern, v.sparsity, v.allocation) == same]
        dense = Variant(a.model, "dense")
        pairs += [(a, o) for o in ([dense] if dense in variants else [])
                  + sorted(others, key=variant_key)]
    return pairs


def _difference(acc, se, items, a: Variant, sa, o: Variant, so, key: str):
    """APT minus the other for one task: ``(cell, paired)``; the cell an Estimate, the bare
    difference without standard errors, None without both figures; paired where both have
    each item's score on the same items."""
    x, y = acc.get((a, "zeroshot", key), {}).get(sa), acc.get((o, "zeroshot", key), {}).get(so)
    if x is None or y is None:
        return None, False
    ia, io = items.get((a, "zeroshot", key), {}).get(sa), items.get((o, "zeroshot", key), {}).get(so)
    if ia is not None and io is not None and ia[0] == io[0]:
        _, err = paired_diff(ia[1], io[1])
        return (x - y if math.isnan(err) else Estimate(x - y, err)), True
    err = diff_se(se.get((a, "zeroshot", key), {}).get(sa),
                  se.get((o, "zeroshot", key), {}).get(so))
    return (x - y if math.isnan(err) else Estimate(x - y, err)), False


def zeroshot_diff_table(records: list[Record]) -> Table | None:
    """The table, or None without zero-shot figures of APT and of another model to compare."""
    recs = [r for r in records if r.kind == "zeroshot"]
    tasks = zeroshot_tasks(recs)
    acc, se, items = seed_values(recs), seed_values(recs, "se"), seed_values(recs, "items")
    seeds: dict[Variant, set] = {}
    for (v, _, t) in acc:
        if t in tasks:
            seeds.setdefault(v, set()).update(acc[(v, "zeroshot", t)])
    rows = []
    for a, o in compared(set(seeds)):
        common = seeds[a] if o.method == "dense" else seeds[a] & seeds[o]
        if not common:
            continue
        sa = min(common, key=seed_key)
        so = None if o.method == "dense" else sa
        diffs = [_difference(acc, se, items, a, sa, o, so, t) for t in tasks]
        cells = [c for c, _ in diffs]
        paired = all(p for _, p in diffs)
        mean_a = mean_over_tasks({t: acc.get((a, "zeroshot", t), {}) for t in tasks}, tasks, sa)
        mean_o = mean_over_tasks({t: acc.get((o, "zeroshot", t), {}) for t in tasks}, tasks, so)
        if mean_a is None or mean_o is None:
            cells.append(None)
        else:
            if paired:   # the tasks' items are distinct: their paired errors add in quadrature
                errs = [c.se if isinstance(c, Estimate) else math.nan for c in cells]
                err = math.sqrt(math.fsum(e * e for e in errs)) / len(errs)
            else:
                err = diff_se(mean_acc_se(se, a, tasks, sa), mean_acc_se(se, o, tasks, so))
            cells.append(mean_a - mean_o if math.isnan(err) else Estimate(mean_a - mean_o, err))
        seed = MISSING if sa is None else str(sa)
        rows.append(((a.model, method_label(a), a.pattern_label, method_label(o), seed,
                      "paired" if paired else "unpaired"), cells))
    if not rows:
        return None
    columns = [label(TASK_LABELS, t) for t in tasks] + ["Mean"]
    table = Table(("Model", "Method", "Pattern", "Versus", "Seed", "Errors"),
                  [("accuracy difference (points)", columns)], rows, format_acc, [])
    table.notes = [
        "APT's zero-shot accuracy minus the other model's, in points, ± its standard error: "
        "paired, sd(a_i - b_i) / sqrt(n) over the items both answered, where both files have "
        "each item's score; else unpaired, sqrt(se_APT^2 + se_other^2) from lm-eval's "
        "per-task standard errors, which overstates it for models that tend to get the same "
        "items right; Mean: the difference of the means over tasks (paired: the tasks' "
        "errors added in quadrature, / the number of tasks)",
        "*: difference larger than twice its standard error",
        "Seed: the calibration draw both pruned models come from (the lowest seed they share; "
        "the dense model has none)",
    ] + settings_notes(recs, "zeroshot")
    return table
