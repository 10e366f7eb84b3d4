"""OWL's allocation as pure functions: outlier ratios, block sparsities, exact layer counts."""

import math
import random

import pytest
import torch

from apt.pruning.allocation import (LayerSize, OwlOptions, block_sparsities, check_allocation,
                                    count_fraction, layer_counts, outlier_ratio)
from apt.pruning.masks import prune_count


def test_outlier_ratio_pools_the_blocks_layers():
    """Two layers of ones, two weights of 50 in the second: over the pooled 48 scores the mean
    is 146 / 48 and both 50s exceed 5x it (ratio 2/48); averaging per-layer ratios would give
    (0 + 2/32) / 2 = 1/32 instead."""
    a = torch.ones(4, 4)
    b = torch.ones(4, 8)
    b[1, 3] = b[2, 7] = 50.0
    ones4, ones8 = torch.ones(4), torch.ones(8)
    assert outlier_ratio([(a, ones4), (b, ones8)], m=5) == 2 / 48
    # a common scale of the input norms (or of nothing at all) changes nothing
    assert outlier_ratio([(a, 9 * ones4), (b, 9 * ones8)], m=5) == 2 / 48
    # with m = 20 the threshold 60.8 is above both
    assert outlier_ratio([(a, ones4), (b, ones8)], m=20) == 0.0


def test_outlier_ratio_counts_activation_outliers():
    """An input with a large norm makes its whole column an outlier: score |w| * ||x_j||."""
    w = torch.ones(3, 10)
    sq = torch.ones(10)
    sq[4] = 100.0 ** 2          # ||x_4|| = 100: column 4 scores 100, the rest 1
    # mean = (27 + 300) / 30 = 10.9; 5x = 54.5 < 100
    assert outlier_ratio([(w, sq)], m=5) == 3 / 30
    assert outlier_ratio([(-w, sq)], m=5) == 3 / 30       # |w|


def test_hand_placed_outliers_get_the_lowest_sparsity_and_the_mean_is_the_target():
    # five equal blocks, block 2 rich in outliers: n = [0, 0, 1, 0, 0], nbar = 0.2
    target, lam = 0.7, 0.08
    s = block_sparsities([0.01, 0.01, 0.05, 0.01, 0.01], [100] * 5, target, lam)
    assert s[2] == pytest.approx(target - lam, abs=1e-15)
    assert min(s) == s[2] and all(x == s[0] for i, x in enumerate(s) if i != 2)
    assert s[0] == pytest.approx(target + lam / 4, abs=1e-15)
    assert sum(s) / 5 == pytest.approx(target, abs=1e-15)


def test_block_sparsities_in_band_monotone_and_weighted_mean_exact():
    rng = random.Random(0)
    for _ in range(200):
        nb = rng.randint(2, 40)
        ratios = [rng.random() ** 3 for _ in range(nb)]
        sizes = [rng.choice([1, 7, 100, 4096, 12345]) for _ in range(nb)]
        target, lam = rng.uniform(0.2, 0.8), rng.uniform(0.0, 0.15)
        s = block_sparsities(ratios, sizes, target, lam)
        assert all(target - lam - 1e-12 <= x <= target + lam + 1e-12 for x in s)
        mean = sum(x * n for x, n in zip(s, sizes)) / sum(sizes)
        assert mean == pytest.approx(target, abs=1e-12)
        for i in range(nb):          # higher outlier ratio -> lower (or equal) sparsity
            for j in range(nb):
                if ratios[i] > ratios[j]:
                    assert s[i] <= s[j] + 1e-15
        # the band is used: one end of it is reached
        assert math.isclose(max(s), target + lam, abs_tol=1e-12) or \
            math.isclose(min(s), target - lam, abs_tol=1e-12)


def test_symmetric_ratios_give_the_authors_map_and_equal_ratios_uniform():
    # nbar = 1/2: the slope is 2 lambda, the authors' min-max map to a band of width 2 lambda
    assert block_sparsities([0.0, 0.5, 1.0], [3, 3, 3], 0.5, 0.1) == \
        pytest.approx([0.6, 0.5, 0.4], abs=1e-15)
    assert block_sparsities([0.02] * 4, [1, 2, 3, 4], 0.6, 0.08) == [0.6] * 4


def test_authors_spread_has_slope_two_lambda_and_keeps_the_mean():
    # the same five blocks as above: n = [0, 0, 1, 0, 0], nbar = 0.2, slope 2 lambda = 0.16
    s = block_sparsities([0.01, 0.01, 0.05, 0.01, 0.01], [100] * 5, 0.7, 0.08, "authors")
    assert s[2] == pytest.approx(0.7 - 0.16 * 0.8, abs=1e-15)     # below target - lambda
    assert s[0] == pytest.approx(0.7 + 0.16 * 0.2, abs=1e-15)
    assert sum(s) / 5 == pytest.approx(0.7, abs=1e-15)
    # equal blocks: the authors' map, min-max to [0, 2 lambda] then centred on the target
    ratios = [0.3, 0.1, 0.7, 0.2]
    norm = [(r - 0.1) / 0.6 for r in ratios]
    authors = [0.7 - (0.16 * n - sum(0.16 * m for m in norm) / 4) for n in norm]
    assert block_sparsities(ratios, [5] * 4, 0.7, 0.08, "authors") == pytest.approx(authors,
                                                                                    abs=1e-15)


def test_layer_counts_are_exact_for_per_matrix_counts():
    rng = random.Random(1)
    for _ in range(200):
        nb = rng.randint(1, 8)
        layers = [LayerSize(rng.randrange(nb), rng.randint(2, 5000)) for _ in range(rng.randint(1, 30))]
        target = rng.uniform(0.2, 0.8)
        s = [min(max(target + rng.uniform(-0.1, 0.1), 0.05), 0.95) for _ in range(nb)]
        counts = layer_counts(layers, s, target)
        total = sum(c * layer.unit for c, layer in zip(counts, layers))
        assert total == prune_count(target, sum(layer.numel for layer in layers))


def test_layer_counts_follow_the_block_sparsity():
    """Weighted mean of the block sparsities at the target: every layer within one weight of
    its block's ideal count (largest remainders)."""
    sizes = [[300, 700, 1000], [500, 500], [998, 2]]
    layers = [LayerSize(b, n) for b, row in enumerate(sizes) for n in row]
    per_block = [sum(row) for row in sizes]
    s = block_sparsities([0.3, 0.1, 0.2], per_block, 0.5, 0.08)
    counts = layer_counts(layers, s, 0.5)
    assert sum(counts) == prune_count(0.5, sum(per_block))
    for c, layer in zip(counts, layers):
        assert abs(c - s[layer.block] * layer.units) < 1 or c in (1, layer.units - 1)


def test_layer_counts_in_rows_stay_within_one_row_of_the_target():
    rng = random.Random(2)
    for _ in range(100):
        layers = [LayerSize(rng.randrange(3), rng.randint(8, 300), rng.choice([16, 32, 48, 96]))
                  for _ in range(rng.randint(2, 12))]
        target = rng.uniform(0.3, 0.7)
        counts = layer_counts(layers, [target - 0.05, target, target + 0.05], target)
        K = prune_count(target, sum(layer.numel for layer in layers))
        total = sum(c * layer.unit for c, layer in zip(counts, layers))
        assert total <= K
        assert K - total < min(layer.unit for layer in layers) or \
            all(c == layer.units - 1 for c, layer in zip(counts, layers))


def test_count_fraction_round_trips_through_prune_count():
    for units in (2, 3, 7, 576, 1536, 576 * 1536, 10**7 + 3):
        for count in {1, units // 3, units // 2, (7 * units) // 10, units - 1}:
            assert prune_count(count_fraction(count, units), units) == count


@pytest.mark.parametrize("kwargs,message", [
    ({"m": 0}, "m=0: expected > 0"),
    ({"m": True}, "expected a number"),
    ({"lam": -0.1}, "lam=-0.1: expected >= 0"),
    ({"lam": float("nan")}, "expected a number"),
    ({"spread": "wide"}, "spread='wide': expected one of 'band', 'authors'"),
])
def test_owl_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OwlOptions(**kwargs)


def test_owl_defaults_and_band_check():
    opts = OwlOptions()
    assert (opts.m, opts.lam) == (5.0, 0.08)
    opts.check_target(0.7)
    with pytest.raises(ValueError, match="leaves \\(0, 1\\); lower lambda below 0.05"):
        OwlOptions(lam=0.08).check_target(0.95)


def test_owl_is_refused_for_nm_and_unknown_allocations():
    check_allocation("owl", structured=False)
    check_allocation("uniform", structured=True)
    with pytest.raises(ValueError, match="unstructured sparsity only"):
        check_allocation("owl", structured=True)
    with pytest.raises(ValueError, match="known: uniform, owl"):
        check_allocation("layerwise", structured=False)
