"""Sequential (block-by-block) pruning of a whole model, as in docs/protocol.md.

The inputs of block 0 are captured once (:mod:`apt.engine.capture`). Then, for each block: move
it to the device; run every calibration sample through it with hooks that accumulate the
Hessian of each prunable layer's inputs; prune those layers with :func:`apt.pruning.prune_matrix`;
run the samples through the pruned block to get the inputs of the next block; move it back.
Only the current block and the activations live on the device.

By default all prunable layers of a block are pruned from the statistics of one forward of the
dense block (as the reference SparseGPT and Wanda code do). With ``true_sequential`` the
adapter's groups (q/k/v, then o, then the MLP input, then its output) are pruned one after the
other, each from inputs that already pass through the pruned groups before it.

Every layer gets the target sparsity, or with ``allocation="owl"`` its block's sparsity from a
dense pass made first (:mod:`apt.engine.owl`), the model's total exactly the target.
"""

from __future__ import annotations

import copy
import logging
import resource
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn

from apt.engine.capture import BlockInputs, capture_block_inputs
from apt.engine.checkpoint import WorkDir
from apt.engine.hooks import accumulate_dense_target, accumulate_inputs, stats_forward
from apt.engine.owl import OwlPlan, block_totals, plan_owl
from apt.models.base import Adapter
from apt.pruning import METHODS, prune_matrix
from apt.pruning.allocation import OwlOptions, check_allocation, outlier_ratio
from apt.pruning.metrics import relative_error
from apt.pruning.stats import dense_target
from apt.pruning.patterns import parse_pattern

log = logging.getLogger(__name__)


@dataclass
class PruneSettings:
    method: str
    sparsity: float | None
    pattern: str = "unstructured"
    blocksize: int = 128
    percdamp: float | None = None      # None: the method's own default
    seed: int = 0
    # prune the adapter's groups one after another (None: only where reconstruct is "dense")
    true_sequential: bool | None = None
    options: dict[str, Any] = field(default_factory=dict)
    allocation: str = "uniform"        # "owl": per-block sparsities (apt.engine.owl)
    owl: OwlOptions | None = None      # OWL's hyperparameters (None: the defaults)
    # what each layer reconstructs: "layer" its own dense outputs on the pruned model's inputs
    # (SparseGPT's objective), "dense" the dense model's outputs; None: the method's default
    reconstruct: str | None = None
    reconstruct_ridge: float = 0.01    # "dense": ridge of the target, x each input's H[j, j]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved(self) -> "PruneSettings":
        """A copy with ``reconstruct`` and ``true_sequential`` set to what the run does (the
        method's default where None), both checked."""
        mode = reconstruct_mode(self)
        return replace(self, reconstruct=mode,
                       true_sequential=group_sequential(self, mode == "dense"))


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak CPU resident set of this process and, on CUDA, peak allocated device memory."""
    out: dict[str, Any] = {"cpu_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _prune_layer(adapter: Adapter, module: nn.Module, hessian: torch.Tensor,
                 settings: PruneSettings, tokens: int, sparsity: float | None,
                 cross: torch.Tensor | None = None) -> dict[str, Any]:
    weight = adapter.get_weight(module).detach().clone()
    if weight.device.type == "cuda":   # the forwards that built the Hessian may still be queued
        torch.cuda.synchronize(weight.device)
    t0 = time.perf_counter()
    if cross is not None:
        weight = dense_target(weight, hessian, cross, settings.reconstruct_ridge)
    res = prune_matrix(weight, hessian, method=settings.method, sparsity=sparsity,
                       pattern=settings.pattern, blocksize=settings.blocksize,
                       percdamp=settings.percdamp, tokens=tokens, **settings.options)
    if res.weight.device.type == "cuda":
        torch.cuda.synchronize(res.weight.device)
    seconds = time.perf_counter() - t0
    rel = relative_error(weight, res.weight, hessian)
    adapter.set_weight(module, res.weight)
    final = adapter.get_weight(module)
    return {"shape": list(weight.shape), "sparsity": float((final == 0).float().mean()),
            "pruned": int(res.mask.sum()),
            "rel_error": rel, "time_s": seconds,
            "info": {k: v for k, v in res.info.items() if isinstance(v, (int, float, str, bool, list))}}


def _forward_all(block: nn.Module, inputs: BlockInputs, dense: nn.Module | None = None,
                 dense_hidden: list[torch.Tensor] | None = None) -> None:
    """Forwards for statistics only: each may stop once the hooks have what they need. With
    ``dense``, each sample goes first through the dense copy on the dense model's hidden state."""
    for j in range(len(inputs.hidden)):
        if dense is not None:
            stats_forward(inputs.call, dense, j, dense_hidden[j])
        stats_forward(inputs.call, block, j)


RECONSTRUCT_MODES = ("layer", "dense")


def reconstruct_mode(settings: PruneSettings) -> str:
    """``settings.reconstruct``, or the method's default: its module's ``RECONSTRUCT``, which
    only the methods that refit the kept weights from the Hessian define (the others keep
    their weights, so a target other than their own would change what they are)."""
    module = METHODS[settings.method]
    mode = settings.reconstruct or getattr(module, "RECONSTRUCT", "layer")
    if mode not in RECONSTRUCT_MODES:
        raise ValueError(f"reconstruct must be one of {', '.join(RECONSTRUCT_MODES)}; got {mode!r}")
    if mode == "dense" and not hasattr(module, "RECONSTRUCT"):
        able = ", ".join(m for m, mod in METHODS.items() if hasattr(mod, "RECONSTRUCT"))
        raise ValueError(f"reconstruct 'dense' needs a method that refits the kept weights from "
                         f"the layer's Hessian ({able}); {settings.method} does not")
    if not settings.reconstruct_ridge > 0:
        raise ValueError(f"reconstruct_ridge must be > 0; got {settings.reconstruct_ridge!r}")
    return mode


def group_sequential(settings: PruneSettings, dense: bool) -> bool:
    """Whether a block's groups are pruned one after another: ``settings.true_sequential``,
    or where None, whenever each layer reconstructs the dense model's outputs. There it is
    required: a target that corrects the error of the inputs a layer is given must be built
    from the inputs it will get, those of the groups before it *pruned*; from one forward of
    the dense block, a later group would correct again what an earlier one already did.
    ``dense``: whether the run reconstructs the dense outputs (:func:`reconstruct_mode`)."""
    if settings.true_sequential is None:
        return dense
    if dense and not settings.true_sequential:
        raise ValueError("reconstruct 'dense' prunes a block's groups one after another "
                         "(true_sequential); true_sequential=False is refused with it")
    return bool(settings.true_sequential)


@torch.no_grad()
def prune_model(model: nn.Module, adapter: Adapter, samples: torch.Tensor,
                settings: PruneSettings | None, device: torch.device | str = "cpu",
                work_dir: WorkDir | None = None,
                on_block_end: Callable[[int], None] | None = None,
                progress: bool = True) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Prune ``model`` in place, block by block, from calibration ``samples`` (K x L token ids).

    ``settings=None`` runs the same sequential pass without pruning (a check of the machinery).
    With ``work_dir`` each finished block is saved and a rerun resumes after the last one.
    ``on_block_end(i)`` is called after block ``i`` is finished (and saved).
    Returns the report (per-module records, totals, memory, time) and the outputs of the last
    block (one tensor per sample, on ``device``).
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    t_start = time.perf_counter()
    blocks = adapter.blocks(model)
    inputs = capture_block_inputs(model, adapter, samples, device)
    t_capture = time.perf_counter() - t_start
    plan = None
    if settings is not None:
        settings = settings.resolved()
        check_allocation(settings.allocation, parse_pattern(settings.pattern).structured)
    if settings is not None and settings.allocation == "owl":
        # on the dense model, so before any pruned block is loaded back
        plan = plan_owl(model, adapter, inputs, device, settings.method, settings.sparsity,
                        settings.owl or OwlOptions())
    records: list[dict[str, Any]] = []
    # "dense": the dense model's hidden states travel beside the pruned model's
    dense_hidden = None
    if settings is not None and settings.reconstruct == "dense":
        dense_hidden = list(inputs.hidden)
    start = 0
    if work_dir is not None:
        start = work_dir.start()
        if start:
            log.info("resuming after block %d of %d from %s", start - 1, len(blocks), work_dir.path)
            for i in range(start):
                work_dir.load_block(i, blocks[i])
            hidden, records, dense = work_dir.load_hidden(start)
            inputs.hidden = [h.to(device) for h in hidden]
            if dense_hidden is not None:
                dense_hidden = [h.to(device) for h in dense]
    bar = tqdm(range(start, len(blocks)), desc="blocks", disable=not progress, initial=start,
               total=len(blocks))
    for i in bar:
        block = blocks[i]
        inputs.use_block(i)
        home = next(block.parameters()).device
        block.to(device)
        if settings is not None:
            torch.manual_seed(settings.seed * 1_000_003 + i)
            groups = (adapter.groups if settings.true_sequential
                      else (tuple(adapter.prunable_names()),))
            modules = adapter.prunable(block)
            dense_block = copy.deepcopy(block) if dense_hidden is not None else None
            for group in groups:
                if dense_block is None:
                    with accumulate_inputs(adapter, block, list(group), device) as accs:
                        _forward_all(block, inputs)
                else:
                    with accumulate_dense_target(adapter, dense_block, block, list(group),
                                                 device) as accs:
                        _forward_all(block, inputs, dense_block, dense_hidden)
                extra = {}
                if plan is not None and len(groups) == 1:
                    # the dense block's ratio on the inputs the pruned model gives it (report)
                    extra["owl_ratio_pruned_inputs"] = outlier_ratio(
                        [(adapter.get_weight(modules[n]), torch.diagonal(accs[n].hessian))
                         for n in group], plan.options.m)
                for name in group:
                    hessian = accs[name].hessian
                    if sum(a is accs[name] for a in accs.values()) > 1:
                        hessian = hessian.clone()  # shared with another layer: keep it intact
                    sparsity = (settings.sparsity if plan is None
                                else plan.layer_sparsity[(i, name)])
                    rec = _prune_layer(adapter, modules[name], hessian, settings,
                                       accs[name].ntokens, sparsity,
                                       getattr(accs[name], "cross", None))
                    records.append({"name": f"{adapter.blocks_path}.{i}.{name}", "block": i,
                                    **rec, **extra})
                del accs
            if dense_block is not None:
                dense_hidden = [inputs.call(dense_block, j, dense_hidden[j])
                                for j in range(len(dense_hidden))]
                del dense_block
        inputs.hidden = [inputs.call(block, j) for j in range(len(inputs.hidden))]
        block.to(home)
        if settings is not None:
            done = [r for r in records if r["block"] == i]
            if done:
                mean_err = sum(r["rel_error"] for r in done) / len(done)
                bar.set_postfix(rel_err=f"{mean_err:.3g}")
                if not progress:
                    log.info("block %d/%d pruned: mean relative layer error %.4g (%.1f s so far)",
                             i + 1, len(blocks), mean_err, time.perf_counter() - t_start)
        if work_dir is not None:
            work_dir.save_block(i, block, inputs.hidden, records, last=i == len(blocks) - 1,
                                dense=dense_hidden)
        if on_block_end is not None:
            on_block_end(i)
    bar.close()
    report = {
        "settings": None if settings is None else settings.as_dict(),
        "device": str(device),
        "nsamples": int(samples.shape[0]),
        "seqlen": int(samples.shape[1]),
        "family": adapter.family,
        "resumed_after_blocks": start,
        "modules": records,
        "totals": _totals(records),
        "allocation": None if settings is None else _allocation(plan, records, len(blocks)),
        "time_s": {"capture": t_capture, "total": time.perf_counter() - t_start},
        "memory": peak_memory(device),
    }
    return report, inputs.hidden


def _allocation(plan: OwlPlan | None, records: list[dict[str, Any]],
                nblocks: int) -> dict[str, Any]:
    """Where the zeros went: per block, the sparsity (and for OWL the outlier ratios)."""
    if plan is not None:
        return plan.report(records)
    return {"name": "uniform", "blocks": [{"block": i, **block_totals(records, i)}
                                          for i in range(nblocks)]}


def _totals(records: list[dict[str, Any]]) -> dict[str, Any]:
    numel = [r["shape"][0] * r["shape"][1] for r in records]
    total = sum(numel)
    zeros = sum(n * r["sparsity"] for n, r in zip(numel, records))
    return {
        "modules": len(records),
        "params": total,
        "zeros": int(round(zeros)),
        "pruned": sum(r["pruned"] for r in records),
        "sparsity": zeros / total if total else 0.0,
        "mean_rel_error": (sum(r["rel_error"] for r in records) / len(records)) if records else None,
        "solver_time_s": sum(r["time_s"] for r in records),
    }


@torch.no_grad()
def sequential_logits(model: nn.Module, adapter: Adapter, samples: torch.Tensor,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Logits (K x L x V) computed block by block through the engine, without pruning."""
    device = torch.device(device)
    _, hidden = prune_model(model, adapter, samples, None, device, progress=False)
    heads = adapter.head_modules(model)
    homes = [next(m.parameters(), torch.empty(0)).device for m in heads]
    try:
        for m in heads:
            m.to(device)
        return torch.cat([adapter.head(model, h) for h in hidden]).cpu()
    finally:
        for m, home in zip(heads, homes):
            m.to(home)
