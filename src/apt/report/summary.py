"""One nested metrics file for ``dvc metrics show / diff``.

``{model: {method: {pattern: {"ppl": {dataset: x}, "acc": {task: x, "mean": x},
"sparsity": achieved}}}}``, the dense reference under ``{model: {"dense": {"dense": ...}}}``.
Non-finite numbers become null (JSON has no inf).
"""

from __future__ import annotations

import math
from typing import Any

from apt.report.records import Record


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def summarize(records: list[Record]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in records:
        v = r.variant
        node = out.setdefault(v.model, {}).setdefault(v.method, {}).setdefault(v.pattern_label, {})
        if r.kind == "ppl":
            node.setdefault("ppl", {}).update({k: _num(x) for k, x in r.values.items()})
        elif r.kind == "zeroshot":
            accs = {k: _num(x) for k, x in r.values.items() if "/" not in k}
            finite = [x for x in accs.values() if x is not None]
            accs["mean"] = sum(finite) / len(finite) if finite and len(finite) == len(accs) else None
            node.setdefault("acc", {}).update(accs)
        elif r.kind == "prune":
            node["sparsity"] = _num(r.values.get("sparsity"))
            node["prune_time_s"] = _num(r.values.get("time_s"))
    return out
