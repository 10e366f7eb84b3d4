"""One nested metrics file for ``dvc metrics show / diff``.

``{model: {method: {pattern: {"ppl": {dataset: x}, "acc": {task: x, "mean": x},
"sparsity": achieved}}}}``, the dense reference under ``{model: {"dense": {"dense": ...}}}``.
A variant pruned from several calibration seeds holds the means, ``ppl_std`` / ``acc_std``
(sample standard deviations), ``seeds`` and ``per_seed: {seed: {...}}``. APT's share of the
SparseGPT-to-dense gap is under ``{model: {"apt": {pattern: {"gap_closed": {dataset: {mean, std,
min, max, seeds}}}}}}``. Non-finite numbers become null (JSON has no inf).

Standard errors, where the metrics files carry what they need (:mod:`apt.report.uncertainty`):
``ppl_se: {dataset: x}`` (of the log-perplexity over windows, i.e. relative to the perplexity),
``acc_se: {task: x, "mean": x}`` (lm-eval's, and of the mean over tasks), and in ``gap_closed``
``se_windows`` (bootstrap over the windows; over several seeds the mean of ``se_windows_per_seed``).
Over several seeds a node's ``ppl_se`` / ``acc_se`` are the means of its seeds'. A variant pruned
under a non-uniform allocation has its own method key: ``sparsegpt+owl``; one pruned with method
options too: ``apt[admm_ramp=2]``.
"""

from __future__ import annotations

import math
from typing import Any

from apt.report.gap import gap_closure
from apt.report.records import Record
from apt.report.seeds import Spread, seed_key
from apt.report.uncertainty import mean_se


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _fill(node: dict[str, Any], r: Record) -> None:
    """The figures of one record (one seed) into its node."""
    if r.kind == "ppl":
        node.setdefault("ppl", {}).update({k: _num(x) for k, x in r.values.items()})
        if r.se:
            node.setdefault("ppl_se", {}).update({k: _num(x) for k, x in r.se.items()})
    elif r.kind == "zeroshot":
        accs = {k: _num(x) for k, x in r.values.items() if "/" not in k}
        finite = [x for x in accs.values() if x is not None]
        accs["mean"] = sum(finite) / len(finite) if finite and len(finite) == len(accs) else None
        node.setdefault("acc", {}).update(accs)
        if r.se:
            tasks = [k for k in r.values if "/" not in k]
            ses = {k: _num(r.se.get(k)) for k in tasks}
            ses["mean"] = _num(mean_se([r.se.get(k) for k in tasks]))
            node.setdefault("acc_se", {}).update(ses)
    elif r.kind == "prune":
        node["sparsity"] = _num(r.values.get("sparsity"))
        node["prune_time_s"] = _num(r.values.get("time_s"))
        node["solver_time_s"] = _num(r.values.get("solver_s"))


def _over_seeds(seeds: list, values: list[float | None]) -> Spread | None:
    """The spread of a figure every seed has (None when a seed lacks it or it is not finite)."""
    if any(v is None for v in values):
        return None
    return Spread(tuple(seeds), tuple(values))


def _combine(nodes: dict[int | None, dict[str, Any]]) -> dict[str, Any]:
    """Means and standard deviations over seeds, and each seed's own figures."""
    seeds = sorted(nodes, key=seed_key)
    out: dict[str, Any] = {"seeds": seeds}
    for section in ("ppl", "acc"):
        keys = [k for s in seeds for k in nodes[s].get(section, {})]
        for key in dict.fromkeys(keys):
            x = _over_seeds(seeds, [nodes[s].get(section, {}).get(key) for s in seeds])
            out.setdefault(section, {})[key] = None if x is None else _num(x.mean)
            out.setdefault(f"{section}_std", {})[key] = None if x is None else _num(x.std)
    for section in ("ppl_se", "acc_se"):
        keys = [k for s in seeds for k in nodes[s].get(section, {})]
        for key in dict.fromkeys(keys):
            x = _over_seeds(seeds, [nodes[s].get(section, {}).get(key) for s in seeds])
            out.setdefault(section, {})[key] = None if x is None else _num(x.mean)
    for key in ("sparsity", "prune_time_s", "solver_time_s"):
        if any(key in nodes[s] for s in seeds):
            x = _over_seeds(seeds, [nodes[s].get(key) for s in seeds])
            out[key] = None if x is None else _num(x.mean)
    out["per_seed"] = {str(s): nodes[s] for s in seeds}
    return out


def summarize(records: list[Record]) -> dict[str, Any]:
    per_seed: dict[tuple[str, str, str], dict[int | None, dict[str, Any]]] = {}
    for r in records:
        v = r.variant
        _fill(per_seed.setdefault((v.model, v.method_id, v.pattern_label), {})
              .setdefault(r.seed, {}), r)
    out: dict[str, Any] = {}
    for (model, method, label), nodes in per_seed.items():
        node = next(iter(nodes.values())) if len(nodes) == 1 else _combine(nodes)
        out.setdefault(model, {}).setdefault(method, {})[label] = node
    for c in gap_closure(records):
        node = out[c.model][c.variant.method_id][c.variant.pattern_label]
        x = c.closed
        name = "gap_closed" if c.baseline_allocation == c.variant.allocation else \
            f"gap_closed_vs_{c.baseline_allocation}"
        gap = node.setdefault(name, {})[c.dataset] = {
            "mean": _num(x.mean), "std": _num(x.std), "min": _num(x.min), "max": _num(x.max),
            "seeds": list(x.seeds)}
        if c.se is not None:
            gap["se_windows"] = _num(c.se.mean)
            gap["se_windows_per_seed"] = [_num(v) for v in c.se.values]
    return out
