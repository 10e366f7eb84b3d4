"""OWL's plan for a whole model: each block's outlier ratio from one dense pass, then a sparsity
for every prunable layer (the allocation itself: :mod:`apt.pruning.allocation`).

The ratios are measured on the dense model, each block on the dense activations of the block
before it, before anything is pruned, as the authors' code does. The sequential engine prunes
each block from the inputs the pruned model gives it, but OWL's normalization runs over all
blocks, so every block's sparsity must be known before block 0 is pruned; ratios from the pruned
model would need a second pruning pass. The engine records, next to each dense ratio, the ratio
of the same dense weights on the inputs the pruned model gives the block, to show how far the
two differ (:func:`apt.engine.sequential.prune_model`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from apt.engine.capture import BlockInputs
from apt.engine.hooks import accumulate_inputs
from apt.models.base import Adapter
from apt.pruning import METHODS
from apt.pruning.allocation import (LayerSize, OwlOptions, block_sparsities, count_fraction,
                                    layer_counts, outlier_ratio)
from apt.pruning.masks import prune_count
from apt.pruning.stats import NormAccumulator


@dataclass
class OwlPlan:
    """Per block: outlier ratio and sparsity; per layer ``(block, name)``: the sparsity given
    to the solver and the weights it prunes."""

    options: OwlOptions
    target: float
    ratios: list[float]
    block_sparsity: list[float]
    layer_sparsity: dict[tuple[int, str], float]
    layer_zeros: dict[tuple[int, str], int]
    target_zeros: int
    count_unit: str
    time_s: float

    def report(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The report's ``allocation`` section, with the sparsity each block got."""
        blocks = []
        for i, (r, s) in enumerate(zip(self.ratios, self.block_sparsity)):
            seen = [x["owl_ratio_pruned_inputs"] for x in records
                    if x["block"] == i and "owl_ratio_pruned_inputs" in x]
            blocks.append({"block": i, "outlier_ratio": r, "sparsity_planned": s,
                           "outlier_ratio_pruned_inputs": seen[0] if seen else None,
                           **block_totals(records, i)})
        return {"name": "owl", "owl_m": self.options.m, "owl_lambda": self.options.lam,
                "owl_spread": self.options.spread,
                "target": self.target, "target_zeros": self.target_zeros,
                "planned_zeros": sum(self.layer_zeros.values()), "count_unit": self.count_unit,
                "dense_pass_s": self.time_s, "blocks": blocks}


def block_totals(records: list[dict[str, Any]], block: int) -> dict[str, Any]:
    """Pruned weights, weights and sparsity of one block's records."""
    mine = [r for r in records if r["block"] == block]
    params = sum(r["shape"][0] * r["shape"][1] for r in mine)
    pruned = sum(r["pruned"] for r in mine)
    return {"params": params, "pruned": pruned, "sparsity": pruned / params if params else None}


@torch.no_grad()
def dense_outlier_ratios(model: nn.Module, adapter: Adapter, inputs: BlockInputs,
                         device: torch.device, m: float) -> list[float]:
    """Each block's pooled outlier ratio on the dense model's own activations. ``inputs`` (the
    captured inputs of block 0) is left as it was."""
    names = adapter.prunable_names()
    view = BlockInputs(hidden=list(inputs.hidden), args=inputs.args, kwargs=inputs.kwargs)
    ratios = []
    for block in adapter.blocks(model):
        home = next(block.parameters()).device
        block.to(device)
        # one forward per sample: the norms on the way, the outputs for the next block
        with accumulate_inputs(adapter, block, names, device, make=NormAccumulator,
                               stop=False) as accs:
            view.hidden = [view.call(block, j) for j in range(len(view.hidden))]
        modules = adapter.prunable(block)
        ratios.append(outlier_ratio([(adapter.get_weight(modules[n]), accs[n].input_sq_norms())
                                     for n in names], m))
        block.to(home)
    return ratios


def plan_owl(model: nn.Module, adapter: Adapter, inputs: BlockInputs, device: torch.device,
             method: str, target: float, options: OwlOptions) -> OwlPlan:
    """The dense pass, the block sparsities and the per-layer counts (exact total)."""
    options.check_target(target)
    t0 = time.perf_counter()
    ratios = dense_outlier_ratios(model, adapter, inputs, device, options.m)
    per_row = getattr(METHODS[method], "COUNTS_PER_ROW", False)
    keys, layers = [], []
    for i, block in enumerate(adapter.blocks(model)):
        for name, module in adapter.prunable(block).items():
            rows, cols = adapter.get_weight(module).shape
            keys.append((i, name))
            layers.append(LayerSize(i, cols, rows) if per_row else LayerSize(i, rows * cols))
    sizes = [0] * len(ratios)
    for layer in layers:
        sizes[layer.block] += layer.numel
    sparsity = block_sparsities(ratios, sizes, target, options.lam, options.spread)
    counts = layer_counts(layers, sparsity, target)
    return OwlPlan(
        options=options, target=target, ratios=ratios, block_sparsity=sparsity,
        layer_sparsity={k: count_fraction(c, layer.units)
                        for k, c, layer in zip(keys, counts, layers)},
        layer_zeros={k: c * layer.unit for k, c, layer in zip(keys, counts, layers)},
        target_zeros=_target_zeros(target, layers), count_unit="row" if per_row else "weight",
        time_s=time.perf_counter() - t0)


def _target_zeros(target: float, layers: list[LayerSize]) -> int:
    return prune_count(target, sum(layer.numel for layer in layers))
