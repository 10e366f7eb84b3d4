"""How a model's target sparsity is spread over its blocks: uniformly, or by OWL.

OWL (Yin et al., ICML 2024, "Outlier Weighed Layerwise sparsity") prunes blocks with many
outliers less. A block's *outlier ratio* is the share of its weights whose Wanda score
``|W_ij| * ||X_j||`` exceeds ``m`` times the mean score, with the scores of all the block's
prunable layers pooled: one mean and one count over the block (as the authors' code does, which
concatenates the block's score matrices before counting). The ratios are min-max normalized to
``n_b`` in [0, 1] and mapped linearly to block sparsities ``s_b = target - c (n_b - nbar)``:
the most outlier-rich block gets the lowest sparsity, ``nbar`` is the mean of ``n_b`` weighted
by each block's prunable weights (so the weighted mean of ``s_b`` is the target), and ``c`` is
the largest slope, at most ``2 lam``, that keeps every ``s_b`` in ``[target - lam, target +
lam]`` (the paper's band; with ``nbar = 1/2`` it is the authors' map exactly). ``spread=
"authors"`` takes ``c = 2 lam`` as the authors' code does: a band of width ``2 lam`` that can
leave ``target +- lam`` (for equal-sized blocks it is their map exactly).

:func:`layer_counts` turns the block sparsities into whole numbers of pruned weights per layer
whose sum is exactly ``floor(target * N)`` (``N`` the model's prunable weights), in units of the
method's count (a row for Wanda, which prunes the same number in every row). Pure functions: no
model code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from apt.pruning.masks import prune_count

ALLOCATIONS = ("uniform", "owl")
SPREADS = ("band", "authors")


@dataclass(frozen=True)
class OwlOptions:
    """OWL's hyperparameters, with the paper's defaults."""

    m: float = field(default=5.0, metadata={
        "help": "outlier threshold: a weight is an outlier where its Wanda score exceeds m "
                "times its block's mean score"})
    lam: float = field(default=0.08, metadata={
        "help": "half-width of the band of block sparsities, [target - lam, target + lam]"})
    spread: str = field(default="band", metadata={
        "help": "'band': every block within target +- lam (the paper); 'authors': slope "
                "2 lam as in the authors' code, a band 2 lam wide that may leave target +- lam"})

    def __post_init__(self):
        if self.spread not in SPREADS:
            raise ValueError(f"OWL option spread={self.spread!r}: expected one of "
                             f"{', '.join(map(repr, SPREADS))} ({_help('spread')})")
        for f in dataclasses.fields(self):
            if f.name == "spread":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ValueError(f"OWL option {f.name}={value!r}: expected a number "
                                 f"({f.metadata['help']})")
        if not self.m > 0:
            raise ValueError(f"OWL option m={self.m!r}: expected > 0 ({_help('m')})")
        if not self.lam >= 0:
            raise ValueError(f"OWL option lam={self.lam!r}: expected >= 0 ({_help('lam')})")

    def check_target(self, target: float) -> None:
        """The band must lie inside (0, 1): every block keeps and prunes something (with
        ``spread="authors"`` the widest it can be, ``target +- 2 lam``)."""
        half = self.lam if self.spread == "band" else 2 * self.lam
        if not (0 < target - half and target + half < 1):
            limit = min(target, 1 - target) / (half / self.lam)
            raise ValueError(f"OWL band [{target - half:g}, {target + half:g}] (target "
                             f"{target:g}, lambda {self.lam:g}, spread {self.spread!r}) leaves "
                             f"(0, 1); lower lambda below {limit:g}")

    @classmethod
    def describe(cls) -> str:
        return "; ".join(f"{f.name} (default {f.default!r}): {f.metadata['help']}"
                         for f in dataclasses.fields(cls))


def _help(name: str) -> str:
    return next(f.metadata["help"] for f in dataclasses.fields(OwlOptions) if f.name == name)


def check_allocation(allocation: str, structured: bool) -> None:
    """``allocation`` is known and applies to the pattern (OWL: unstructured only)."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation {allocation!r}: unknown; known: {', '.join(ALLOCATIONS)}")
    if allocation == "owl" and structured:
        raise ValueError("allocation 'owl' applies to unstructured sparsity only: an N:M "
                         "pattern fixes the same fraction N/M in every group of every layer, "
                         "so there is no sparsity to move between blocks; use --allocation "
                         "uniform (the default) with N:M")


def wanda_scores(weight: torch.Tensor, sq_norms: torch.Tensor) -> torch.Tensor:
    """``|W_ij| * ||X_j||`` in float64, from the squared input norms (any common scale)."""
    return weight.detach().to(torch.float64).abs() \
        * sq_norms.to(device=weight.device, dtype=torch.float64).clamp_min(0).sqrt()


def outlier_ratio(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], m: float = 5.0) -> float:
    """Share of a block's Wanda scores above ``m`` times their mean, the scores of all its
    layers pooled. ``layers``: ``(weight, squared input norms)`` per prunable layer; a common
    scale of the norms does not change the ratio. Scores are made one layer at a time, twice
    (mean, then count), so that no block-sized buffer is held."""
    total = sum(w.numel() for w, _ in layers)
    if total == 0:
        raise ValueError("outlier_ratio needs at least one weight")
    mean = sum(float(wanda_scores(w, q).sum()) for w, q in layers) / total
    count = sum(int((wanda_scores(w, q) > m * mean).sum()) for w, q in layers)
    return count / total


def block_sparsities(ratios: Sequence[float], sizes: Sequence[int], target: float,
                     lam: float = 0.08, spread: str = "band") -> list[float]:
    """OWL's block sparsities from the blocks' outlier ratios and prunable weights (module
    docstring): in ``[target - lam, target + lam]`` (``spread="band"``), weighted mean
    ``target``, lower where the ratio is higher. Equal ratios give ``target`` everywhere."""
    if len(ratios) != len(sizes) or not ratios:
        raise ValueError(f"one outlier ratio and one size per block; got {len(ratios)} ratios "
                         f"and {len(sizes)} sizes")
    if any(n <= 0 for n in sizes):
        raise ValueError(f"block sizes must be positive; got {list(sizes)}")
    lo, hi = min(ratios), max(ratios)
    if hi == lo:
        return [float(target)] * len(ratios)
    norm = [(r - lo) / (hi - lo) for r in ratios]
    nbar = sum(n * w for n, w in zip(norm, sizes)) / sum(sizes)
    slope = lam / max(nbar, 1.0 - nbar) if spread == "band" else 2 * lam
    return [target - slope * (n - nbar) for n in norm]


@dataclass(frozen=True)
class LayerSize:
    """A prunable layer: its block, and its weights as ``units`` counting units of ``unit``
    weights each (a unit is one weight, or one row's share for a per-row method)."""

    block: int
    units: int
    unit: int = 1

    @property
    def numel(self) -> int:
        return self.units * self.unit


def layer_counts(layers: Sequence[LayerSize], block_sparsity: Sequence[float],
                 target: float) -> list[int]:
    """Units to prune per layer: as close to ``block_sparsity[layer.block] * numel`` as whole
    units allow, with the weights they prune summing to ``K = floor(target * N)`` exactly
    when every unit is one weight, else to the largest total ``<= K`` reached by adding units
    (short of ``K`` by less than the smallest unit).

    Largest remainders: each layer first gets the floor of its ideal count (kept in
    ``[1, units - 1]``), then one unit more, in order of the largest fractional parts, while
    the total stays within ``K``.
    """
    if any(layer.units < 2 for layer in layers):
        raise ValueError("every layer needs at least 2 counting units to be partly pruned")
    K = prune_count(target, sum(layer.numel for layer in layers))
    ideal = [block_sparsity[layer.block] * layer.units for layer in layers]
    counts = [min(max(math.floor(x), 1), layer.units - 1) for x, layer in zip(ideal, layers)]
    order = sorted(range(len(layers)), key=lambda i: (-(ideal[i] - counts[i]), i))
    total = sum(c * layer.unit for c, layer in zip(counts, layers))
    changed = True
    while total > K and changed:    # rounding noise above K: take back the smallest remainders
        changed = False
        for i in reversed(order):
            if total > K and counts[i] > 1:
                counts[i] -= 1
                total -= layers[i].unit
                changed = True
    changed = True
    while changed:                  # largest remainders first, then any unit that still fits
        changed = False
        for i in order:
            if counts[i] < layers[i].units - 1 and total + layers[i].unit <= K:
                counts[i] += 1
                total += layers[i].unit
                changed = True
    if total > K:
        raise ValueError(f"cannot prune {K} weights with at least one unit in every layer")
    return counts


def count_fraction(count: int, units: int) -> float:
    """The sparsity a method turns back into ``count`` of ``units`` with
    :func:`apt.pruning.masks.prune_count`."""
    s = count / units
    if prune_count(s, units) != count:
        raise RuntimeError(f"sparsity {s!r} does not give back {count} of {units}")
    return s
