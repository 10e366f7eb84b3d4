"""APT's ADMM mask search: the ramp, the projection, and its fixed point (the MRP optimum)."""

from __future__ import annotations

import math

import pytest
import torch

from apt.pruning.admm import admm_search, project_mask, ramp_fraction
from apt.pruning.hessian import damped
from apt.pruning.masks import prune_count
from apt.pruning.mrp import refit_exact
from apt.pruning.patterns import Pattern

D = torch.float64


def problem(m, n, T=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n, n, generator=g, dtype=D) / n ** 0.5 + torch.eye(n, dtype=D)
    X = mix @ torch.randn(n, T, generator=g, dtype=D)
    W = torch.randn(m, n, generator=g, dtype=D)
    return W, (2.0 / T) * X @ X.T


def test_ramp_rises_to_the_target_and_stays():
    fr = [ramp_fraction(t, 4, 0.6) for t in range(7)]
    assert all(a < b for a, b in zip(fr[:4], fr[1:4])) and fr[0] > 0
    assert fr[3:] == [0.6] * 4
    assert ramp_fraction(0, 1, 0.3) == 0.3


@pytest.mark.parametrize("pattern", [Pattern(), Pattern(2, 4), Pattern(4, 8)])
def test_projection_counts(pattern):
    """Mid-ramp: the lowest scores, prune_count(fraction) of them, inside the N:M candidates;
    at the target: the unstructured count or exactly N per group."""
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(6, 16, generator=g, dtype=D)
    for frac in (0.1, 0.3, 0.5):
        mask = project_mask(scores, pattern, frac, 0.5)
        assert int(mask.sum()) == prune_count(frac, 96)
        kept_min = scores[~mask].min()
        if pattern.structured:
            cand = project_mask(scores, pattern, 0.5, 0.5)
            assert (mask <= cand).all()
            assert (cand.reshape(6, -1, pattern.m).sum(-1) == pattern.n).all()
            kept_min = scores[cand & ~mask].min() if (cand & ~mask).any() else math.inf
        assert (scores[mask] <= kept_min).all()


@pytest.mark.parametrize("pattern,sparsity", [(Pattern(), 0.5), (Pattern(), 0.7),
                                              (Pattern(2, 4), 0.5)])
def test_fixed_point_is_the_refit_optimum(pattern, sparsity):
    """Once ADMM has settled (x = z, a fixed mask), the scaled dual u vanishes on the kept
    weights, so the gradient of 1/2 (w - w0) H (w - w0)^T does too: the result is the exact
    least-squares refit on its own mask (the MRP optimum), whatever mask it settled on.
    (With rho = 1 the mask of this small problem keeps cycling, as nonconvex ADMM may; a
    larger rho makes it settle, and the fixed point property holds for any rho.)"""
    W, H = problem(6, 16, seed=3)
    Hd, dead = damped(H, 0.2, "diag")
    w, mask = admm_search(W.clone(), Hd, dead, pattern, sparsity, iters=400, ramp=4, rho=4.0)
    _, mask_next = admm_search(W.clone(), Hd, dead, pattern, sparsity, iters=401, ramp=4, rho=4.0)
    assert torch.equal(mask, mask_next)                 # settled
    torch.testing.assert_close(w, refit_exact(W, Hd, mask), rtol=1e-6, atol=1e-8)
    assert (w[mask] == 0).all()


def test_inputs_left_alone_and_dead_pruned_first():
    W, H = problem(4, 8, seed=2)
    H[5, :] = 0.0
    H[:, 5] = 0.0
    Hd, dead = damped(H, 0.2, "diag")
    W0 = W.clone()
    _, mask = admm_search(W, Hd, dead, Pattern(), 0.25, iters=5, ramp=4)
    assert torch.equal(W, W0)
    assert mask[:, 5].all() and int(mask.sum()) == 8


def test_singular_hessian_without_damping():
    """Fewer tokens than inputs and no damping: H is singular; the scaling's inverse is retried
    with a tiny damping instead of failing, and the mask is still exact."""
    from apt.pruning import prune_matrix
    W, H = problem(4, 16, T=6, seed=4)
    r = prune_matrix(W, H, "apt", 0.5, "unstructured", percdamp=0.0, refit=False)
    assert int(r.mask.sum()) == 32 and torch.isfinite(r.weight).all()


@pytest.mark.parametrize("pattern,sparsity", [(Pattern(), 0.5), (Pattern(2, 4), 0.5)])
def test_low_precision_gemms_keep_the_pattern_and_the_last_step_exact(pattern, sparsity):
    """bfloat16 GEMMs in the steering steps: the mask still has exactly the pattern, the weights
    are 0 on it, and the last step runs in the compute dtype: from the same state, its result
    differs from the all-float64 search only through the mask and the dual (so a search of one
    step, all in the last step, is identical)."""
    W, H = problem(8, 32, seed=5)
    Hd, dead = damped(H, 0.2, "diag")
    w, mask = admm_search(W.clone(), Hd, dead, pattern, sparsity, gemm_dtype=torch.bfloat16)
    assert w.dtype == D and (w[mask] == 0).all()
    if pattern.structured:
        assert (mask.reshape(8, -1, pattern.m).sum(-1) == pattern.n).all()
    else:
        assert int(mask.sum()) == prune_count(sparsity, W.numel())
    one = admm_search(W.clone(), Hd, dead, pattern, sparsity, iters=1, ramp=1)
    one_low = admm_search(W.clone(), Hd, dead, pattern, sparsity, iters=1, ramp=1,
                          gemm_dtype=torch.bfloat16)
    assert torch.equal(one[0], one_low[0]) and torch.equal(one[1], one_low[1])


@pytest.mark.parametrize("pattern,sparsity", [(Pattern(), 0.5), (Pattern(), 0.8),
                                              (Pattern(2, 4), 0.5)])
def test_stability_stop_is_the_plain_search_of_that_length(pattern, sparsity):
    """Beyond ``iters`` with rho fixed, the search stops at the first check where the mask is
    what it was at the previous one; the result is then exactly the plain search run for that
    many steps (the stop only decides the length), with the pattern exact. (rho 3: with a
    small rho the 2:4 mask of this small problem keeps cycling.)"""
    W, H = problem(8, 32, seed=6)
    Hd, dead = damped(H, 0.2, "diag")
    stats = {}
    w, mask = admm_search(W.clone(), Hd, dead, pattern, sparsity, iters=6, ramp=4, rho=3.0,
                          max_iters=200, stop_change=1e-12, stats=stats)
    steps = stats["steps"]
    assert 6 <= steps < 200
    plain = admm_search(W.clone(), Hd, dead, pattern, sparsity, iters=steps, ramp=4, rho=3.0)
    assert torch.equal(w, plain[0]) and torch.equal(mask, plain[1])
    _, before = admm_search(W.clone(), Hd, dead, pattern, sparsity, iters=steps - 1, ramp=4,
                            rho=3.0)
    assert steps == 6 or torch.equal(before, mask)      # stable since the previous step
    if pattern.structured:
        assert (mask.reshape(8, -1, pattern.m).sum(-1) == pattern.n).all()
    else:
        assert int(mask.sum()) == prune_count(sparsity, W.numel())


@pytest.mark.parametrize("pattern,sparsity", [(Pattern(), 0.7), (Pattern(2, 4), 0.5)])
def test_rho_growth_settles_a_search_that_cycles_at_fixed_rho(pattern, sparsity):
    """From rho 0.5 the mask of this small problem keeps changing for 2000 steps; raising rho
    at each check while it changes makes it settle, on a mask of exactly the pattern. (Where
    it settles the weights need not be the refit optimum yet: a large rho pins x to z, so the
    kept weights move slowly; hence the refit after such a search.)"""
    W, H = problem(6, 16, seed=3)
    Hd, dead = damped(H, 0.2, "diag")
    runs = {}
    for growth in (1.0, 1.2):
        stats = {}
        w, mask = admm_search(W.clone(), Hd, dead, pattern, sparsity, iters=4, ramp=4,
                              rho=0.5, max_iters=2000, stop_change=1e-12, rho_growth=growth,
                              check_every=3, stats=stats)
        runs[growth] = stats
    assert runs[1.0]["steps"] == 2000 and runs[1.0]["rho_final"] == 0.5
    assert runs[1.2]["steps"] < 2000 and runs[1.2]["rho_final"] > 0.5
    assert (w[mask] == 0).all()
    if pattern.structured:
        assert (mask.reshape(6, -1, pattern.m).sum(-1) == pattern.n).all()
    else:
        assert int(mask.sum()) == prune_count(sparsity, W.numel())


def test_extended_search_options_are_validated():
    from apt.pruning.apt_options import AptOptions
    for bad in ({"admm_max_iters": 0}, {"admm_stop_change": -1.0}, {"admm_rho_growth": 0.0},
                {"admm_check_every": 0}, {"refit_precond": "ilu"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AptOptions.from_mapping(bad)
