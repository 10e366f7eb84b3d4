"""Metrics JSONs -> flat records, with every setting read from inside the files.

Three kinds of file are understood, by their content:
- ``apt eval ppl`` output (``"evaluation": "perplexity"``, keys ``model``, ``dataset``, ``ppl``);
- ``apt eval zeroshot`` output (``"evaluation": "zeroshot"``, ``tasks.<name>.acc``);
- ``apt prune`` reports (``prune_report.json``: ``settings.method``, ``settings.pattern``,
  ``settings.sparsity``, ``model``).
An evaluation of a pruned model is tied to its prune report by place: the report copied next to
it (``prune.json`` in the same folder, as the workflow lays out results) or the
``prune_report.json`` inside the evaluated checkpoint. An evaluation with neither is of the dense
model. Method, pattern, sparsity, allocation (uniform, or OWL's per-block sparsities) and the
method options given to ``apt prune --option`` always come from the prune report, never from a
path: a method pruned with options is a variant of its own. Uncertainty: a perplexity file's
``window_nll`` becomes per-window mean NLLs and the standard error of the log-perplexity, a
zero-shot file's ``acc_stderr`` the tasks' standard errors (:mod:`apt.report.uncertainty`); older
files without them give records without.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from apt.errors import AptError
from apt.report.uncertainty import log_ppl_se, window_means


@dataclass(frozen=True)
class Variant:
    """How a model was pruned: ``method == "dense"`` for the unpruned reference."""

    model: str                 # short model name (row label)
    method: str
    pattern: str = "dense"     # "unstructured", "N:M" or "dense"
    sparsity: float = 0.0      # fraction of zeros asked (N/M for N:M)
    allocation: str = "uniform"   # how the zeros were spread over blocks: "uniform" or "owl"
    options: str = ""          # the method options asked for, "key=value, ..." ("": defaults)

    @property
    def method_id(self) -> str:
        """The method with a non-uniform allocation and its options: ``sparsegpt``,
        ``sparsegpt+owl``, ``apt[admm_ramp=2, admm_rho=1.25]``."""
        name = self.method if self.allocation == "uniform" else f"{self.method}+{self.allocation}"
        return f"{name}[{self.options}]" if self.options else name

    @property
    def pattern_label(self) -> str:
        if self.method == "dense":
            return "dense"
        if self.pattern == "unstructured":
            return f"{self.sparsity * 100:g}%"
        return self.pattern

    @property
    def structured(self) -> bool:
        return ":" in self.pattern


@dataclass
class Record:
    variant: Variant
    kind: str                  # "ppl", "zeroshot" or "prune"
    values: dict[str, float]   # ppl: {dataset: ppl}; zeroshot: {task: acc, task/acc_norm: ...}
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    # standard errors of values' figures: ppl: {dataset: SE of log ppl}; zeroshot: {task: SE}
    se: dict[str, float] = field(default_factory=dict)
    # ppl: {dataset: each window's mean NLL per predicted token}
    windows: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # zeroshot: {task: (doc ids, each item's acc)}, where the file has them (paired tests)
    items: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        """The calibration draw of a pruned variant (its prune report's); None for dense."""
        calibration = self.settings.get("calibration")
        return calibration.get("seed") if isinstance(calibration, dict) else None


def short_model_name(source: str) -> str:
    """'facebook/opt-125m' -> 'opt-125m', '/x/models/llama/' -> 'llama', 'smollm2-135m' kept."""
    text = str(source).rstrip("/")
    return text.rsplit("/", 1)[-1] or text


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AptError(f"{path}: cannot read metrics JSON ({exc})") from None
    if not isinstance(data, dict):
        raise AptError(f"{path}: expected a JSON object")
    return data


def _is_prune_report(data: dict[str, Any]) -> bool:
    return isinstance(data.get("settings"), dict) and "method" in data["settings"] \
        and "totals" in data


def variant_of_prune_report(data: dict[str, Any], path: Path) -> Variant:
    s = data["settings"]
    try:
        method, pattern = str(s["method"]), str(s.get("pattern") or "unstructured")
        sparsity = float(s["sparsity"])
    except (KeyError, TypeError, ValueError):
        raise AptError(f"{path}: prune report without settings.method / settings.sparsity") from None
    model = data.get("model") or data.get("model_path")
    if not model:
        raise AptError(f"{path}: prune report without 'model'")
    section = data.get("allocation")
    allocation = (section.get("name") if isinstance(section, dict) else None) \
        or s.get("allocation") or "uniform"
    if not isinstance(allocation, str):
        raise AptError(f"{path}: prune report with allocation {allocation!r}, expected a name "
                       "such as 'uniform' or 'owl'")
    options = s.get("options") or {}
    if not isinstance(options, dict):
        raise AptError(f"{path}: prune report with settings.options {options!r}, expected a "
                       "mapping of option names to values")
    return Variant(short_model_name(model), method, pattern, sparsity, allocation,
                   options_label(options))


def options_label(options: dict[str, Any]) -> str:
    """``{"admm_rho": 1.25, "admm_ramp": 2}`` -> ``"admm_ramp=2, admm_rho=1.25"`` (sorted by
    name; values as JSON, strings bare unless they would read as another value: ``"1"`` is
    quoted, so it does not share a label with the number 1), ``""`` for no options."""
    return ", ".join(f"{k}={_option_value(v)}" for k, v in sorted(options.items()))


def _option_value(value: Any) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def _prune_report_for(eval_path: Path, model: str) -> tuple[dict[str, Any], Path] | None:
    candidates = [eval_path.parent / "prune.json", Path(model) / "prune_report.json"]
    for c in candidates:
        if c.is_file() and c.resolve() != eval_path.resolve():
            data = _read_json(c)
            if _is_prune_report(data):
                return data, c
    return None


def _finite(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def load_records(path: str | Path) -> list[Record]:
    """The records of one metrics JSON (empty for files of other kinds)."""
    path = Path(path)
    data = _read_json(path)
    if _is_prune_report(data):
        v = variant_of_prune_report(data, path)
        totals = data.get("totals") or {}
        modules = [m for m in data.get("modules") or [] if isinstance(m, dict)]
        values = {"sparsity": _finite(totals.get("sparsity")),
                  "time_s": _finite((data.get("time_s") or {}).get("total")),
                  # the solvers' own time, summed over the modules (no loading or saving)
                  "solver_s": (math.fsum(_finite(m.get("time_s")) for m in modules)
                               if modules else math.nan),
                  "rss_mb": _finite((data.get("memory") or {}).get("cpu_max_rss_mb"))}
        return [Record(v, "prune", values, {"calibration": data.get("calibration")}, str(path))]
    evaluation = data.get("evaluation")
    if evaluation not in ("perplexity", "zeroshot"):
        return []
    model = data.get("model")
    if not model:
        raise AptError(f"{path}: evaluation without 'model'")
    found = _prune_report_for(path, str(model))
    variant = (variant_of_prune_report(*found) if found
               else Variant(short_model_name(str(model)), "dense"))
    settings = dict(data.get("settings") or {})
    if found:
        settings["calibration"] = found[0].get("calibration")
    if evaluation == "perplexity":
        if "ppl" not in data or "dataset" not in data:
            raise AptError(f"{path}: perplexity result without 'ppl' or 'dataset'")
        settings.setdefault("windows", data.get("windows"))
        dataset = short_model_name(str(data["dataset"]))
        rec = Record(variant, "ppl", {dataset: _finite(data["ppl"])}, settings, str(path))
        means = _window_means(data, path)
        if means is not None:
            rec.windows[dataset] = means
            rec.se[dataset] = log_ppl_se(means)
        return [rec]
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise AptError(f"{path}: zero-shot result without 'tasks'")
    values: dict[str, float] = {}
    ses: dict[str, float] = {}
    items: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {}
    for name, rec in tasks.items():
        if not isinstance(rec, dict) or "acc" not in rec:
            raise AptError(f"{path}: task {name!r} without 'acc'")
        values[name] = _finite(rec["acc"])
        if "acc_norm" in rec:
            values[f"{name}/acc_norm"] = _finite(rec["acc_norm"])
        if math.isfinite(se := _finite(rec.get("acc_stderr"))):
            ses[name] = se
        got = rec.get("items")
        if isinstance(got, dict) and "doc_id" in got and "acc" in got:
            if len(got["doc_id"]) != len(got["acc"]):
                raise AptError(f"{path}: task {name!r}: {len(got['doc_id'])} item ids for "
                               f"{len(got['acc'])} item scores")
            items[name] = (tuple(int(i) for i in got["doc_id"]),
                           tuple(float(a) for a in got["acc"]))
    return [Record(variant, "zeroshot", values, settings, str(path), se=ses, items=items)]


def _window_means(data: dict[str, Any], path: Path) -> tuple[float, ...] | None:
    """The per-window mean NLLs of a perplexity file (None for a file without ``window_nll``)."""
    sums = data.get("window_nll")
    if sums is None:
        return None
    windows, tokens = data.get("windows"), data.get("tokens")
    if not isinstance(sums, list) or windows != len(sums) or not isinstance(tokens, int):
        raise AptError(f"{path}: 'window_nll' should list one NLL sum per window "
                       f"({windows} windows, {tokens} tokens); rerun `apt eval ppl` for this file")
    try:
        return window_means(sums, tokens)
    except (TypeError, ValueError) as exc:
        raise AptError(f"{path}: 'window_nll': {exc}; rerun `apt eval ppl` for this file") from None


#: settings that make two evaluations of the dense model the same measurement
PROTOCOL = ("seqlen", "max_windows", "windows", "split", "limit", "num_fewshot", "tasks")
#: how far apart two such evaluations' figures may be (float summation order, not a result)
REPEAT_RTOL = 1e-6


def same_reference(a: Record, b: Record) -> bool:
    """Whether two records are the dense model evaluated twice alike: the same protocol and
    figures within :data:`REPEAT_RTOL` (as two runs passed together each evaluate it)."""
    if a.variant != b.variant or a.variant.method != "dense" or a.kind != b.kind:
        return False
    if a.values.keys() != b.values.keys() or any(
            a.settings.get(k) != b.settings.get(k) for k in PROTOCOL):
        return False
    return all(math.isclose(a.values[k], b.values[k], rel_tol=REPEAT_RTOL)
               or (math.isnan(a.values[k]) and math.isnan(b.values[k])) for k in a.values)


def collect_records(paths: Iterable[str | Path]) -> list[Record]:
    """Records of the given files; folders are searched for ``*.json`` recursively. The dense
    model's evaluation found again alike (:func:`same_reference`; e.g. two runs' folders, one
    uniform and one OWL) is kept once; results that disagree are left for the report to refuse."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*.json") if q.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise AptError(f"--metrics {p}: no such file or folder")
    records: list[Record] = []
    for f in files:
        for rec in load_records(f):
            if not any(same_reference(rec, kept) for kept in records):
                records.append(rec)
    return records
