"""Baselines against their definitions, written independently of the implementation.

- SparseGPT equals a plain column-by-column OBS loop (no Cholesky, no lazy blocks: the inverse of
  the trailing Hessian ``H[i:, i:]`` taken directly at every column) with the same mask rule.
- Wanda and magnitude masks satisfy their definitions (pruned scores below kept scores, in the
  right scope) and leave the kept weights untouched.
- Generic properties over every method in ``METHODS``: exact pattern, shape/dtype/device
  preserved, dead inputs pruned, a failed Cholesky retried and recorded.
"""

from __future__ import annotations

import math

import pytest
import torch

from apt.pruning import METHODS, prune_matrix
from apt.pruning.hessian import damped, prepare

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_problem(m: int, n: int, t: int = 200, seed: int = 0, dead=()):
    """Random weight and the Hessian (2/T) X X^T of correlated inputs X (n x T)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(m, n, generator=g, dtype=torch.float64)
    mix = torch.eye(n, dtype=torch.float64) + 0.3 * torch.randn(n, n, generator=g,
                                                                  dtype=torch.float64)
    x = mix @ torch.randn(n, t, generator=g, dtype=torch.float64)
    x = x * (0.5 + torch.rand(n, 1, generator=g, dtype=torch.float64))
    for j in dead:
        x[j] = 0
    return w, 2.0 / t * x @ x.T, x


def run(method, *args, **kwargs):
    return prune_matrix(*args, method=method, **kwargs)


def floor_count(s, total):
    return math.floor(s * total + 1e-9)


# ---------------------------------------------------------------------------------- SparseGPT
def obs_loop(w, h, pattern, sparsity, blocksize, percdamp=0.01):
    """SparseGPT's algorithm, plainly: one column at a time, trailing inverses taken directly."""
    w = w.clone().double()
    h = h.clone().double()
    m, n = w.shape
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += percdamp * torch.diagonal(h).mean() * torch.eye(n, dtype=h.dtype)
    mask = torch.zeros(m, n, dtype=torch.bool)
    mask[:, dead] = True
    nm = None if pattern == "unstructured" else tuple(int(v) for v in pattern.split(":"))
    if nm:
        blocksize = max(nm[1], blocksize // nm[1] * nm[1])
    d = torch.stack([torch.linalg.inv(h[j:, j:])[0, 0] for j in range(n)])
    for i in range(n):
        if nm is None and i % blocksize == 0:
            i2 = min(i + blocksize, n)
            k = floor_count(sparsity, m * i2) - floor_count(sparsity, m * i)
            score = w[:, i:i2] ** 2 / d[i:i2]
            score[mask[:, i:i2]] = -1
            order = torch.argsort(score.flatten())[:k]
            blk = mask[:, i:i2].clone().flatten()
            blk[order] = True
            mask[:, i:i2] = blk.reshape(m, i2 - i)
        if nm and i % nm[1] == 0:
            score = w[:, i:i + nm[1]] ** 2 / d[i:i + nm[1]]
            score[mask[:, i:i + nm[1]]] = -1
            for r in range(m):
                for c in torch.argsort(score[r])[:nm[0]]:
                    mask[r, i + c] = True
        hinv = torch.linalg.inv(h[i:, i:])
        err = torch.where(mask[:, i], w[:, i], torch.zeros(())) / hinv[0, 0]
        w[:, i:] -= torch.outer(err, hinv[0])
        w[mask[:, i], i] = 0
    return w, mask


@pytest.mark.parametrize("pattern,sparsity,n,blocksize", [
    ("unstructured", 0.5, 20, 8),      # 2 full blocks and a partial one
    ("unstructured", 0.7, 16, 128),    # one block
    ("unstructured", 0.3, 24, 5),      # block size not dividing n
    ("2:4", None, 20, 8),
    ("4:8", None, 24, 8),
    ("2:4", None, 16, 6),              # block size rounded down to a multiple of M
])
def test_sparsegpt_equals_plain_obs_loop(pattern, sparsity, n, blocksize):
    w, h, _ = make_problem(7, n, seed=n + blocksize)
    res = prune_matrix(w, h, "sparsegpt", sparsity=sparsity, pattern=pattern, blocksize=blocksize)
    ref_w, ref_mask = obs_loop(w, h, pattern, sparsity or 0.5, blocksize)
    assert torch.equal(res.mask, ref_mask)
    torch.testing.assert_close(res.weight, ref_w, rtol=1e-9, atol=1e-9)
    assert (res.weight[res.mask] == 0).all()


def test_sparsegpt_update_lowers_error_vs_masking_alone():
    w, h, _ = make_problem(16, 32, seed=3)
    res = prune_matrix(w, h, "sparsegpt", sparsity=0.5)
    masked = w.masked_fill(res.mask, 0)

    def err(v):
        d = w - v
        return float(torch.einsum("ij,jk,ik->", d, h, d))
    assert err(res.weight) < err(masked)


def test_sparsegpt_float32_compute_close_to_float64():
    w, h, _ = make_problem(8, 32, seed=5)
    a = prune_matrix(w, h, "sparsegpt", sparsity=0.5, dtype=torch.float64)
    b = prune_matrix(w, h, "sparsegpt", sparsity=0.5, dtype=torch.float32)
    assert b.info["compute_dtype"] == "torch.float32"
    assert (a.mask != b.mask).float().mean() < 0.05
    torch.testing.assert_close(b.weight[~(a.mask | b.mask)], a.weight[~(a.mask | b.mask)],
                               rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------- Wanda and magnitude
@pytest.mark.parametrize("sparsity", [0.5, 0.3, 0.7])
def test_wanda_unstructured_definition(sparsity):
    w, h, x = make_problem(9, 30, seed=1)
    res = prune_matrix(w, h, "wanda", sparsity=sparsity)
    score = w.abs() * x.norm(dim=1)          # |w_ij| * ||X_j||_2, computed from X itself
    k = floor_count(sparsity, 30)
    for r in range(9):
        pruned, kept = score[r][res.mask[r]], score[r][~res.mask[r]]
        assert pruned.numel() == k
        assert pruned.max() < kept.min()
    assert torch.equal(res.weight, w.masked_fill(res.mask, 0))


@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:3"])
@pytest.mark.parametrize("method", ["wanda", "magnitude"])
def test_scored_baselines_nm_definition(method, pattern):
    nn_, mm = (int(v) for v in pattern.split(":"))
    w, h, x = make_problem(6, 24, seed=2)
    res = prune_matrix(w, h, method, sparsity=None, pattern=pattern)
    score = w.abs() * (x.norm(dim=1) if method == "wanda" else 1)
    s, mk = score.reshape(6, -1, mm), res.mask.reshape(6, -1, mm)
    for r in range(6):
        for g in range(s.shape[1]):
            assert int(mk[r, g].sum()) == nn_
            assert s[r, g][mk[r, g]].max() < s[r, g][~mk[r, g]].min()
    assert torch.equal(res.weight, w.masked_fill(res.mask, 0))


@pytest.mark.parametrize("sparsity", [0.5, 0.29, 0.7])
def test_magnitude_unstructured_is_one_threshold_for_the_matrix(sparsity):
    w, _, _ = make_problem(10, 10, seed=4)
    res = prune_matrix(w, None, "magnitude", sparsity=sparsity)
    assert int(res.mask.sum()) == floor_count(sparsity, 100)
    assert w.abs()[res.mask].max() < w.abs()[~res.mask].min()
    # rows are not balanced: the threshold is global
    assert torch.equal(res.weight, w.masked_fill(res.mask, 0))


# ----------------------------------------------------------------------- generic, every method
GENERIC = [("unstructured", 0.5), ("unstructured", 0.3), ("unstructured", 0.7),
           ("2:4", None), ("4:8", None), ("1:3", None)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pattern,sparsity", GENERIC)
@pytest.mark.parametrize("method", list(METHODS))
def test_exact_pattern_every_method(method, pattern, sparsity, device):
    m, n = 12, 48
    w, h, _ = make_problem(m, n, seed=7)
    w32, h32 = w.float().to(device), h.float().to(device)
    res = run(method, w32, h32, sparsity=sparsity, pattern=pattern, blocksize=16)
    assert res.mask.dtype == torch.bool and res.mask.shape == (m, n)
    assert res.weight.shape == (m, n) and res.weight.dtype == torch.float32
    assert res.weight.device == w32.device and res.mask.device == w32.device
    assert torch.isfinite(res.weight).all()
    assert (res.weight[res.mask] == 0).all()
    if pattern == "unstructured":
        total = int(res.mask.sum())
        if method == "wanda":
            assert (res.mask.sum(1) == floor_count(sparsity, n)).all()
        elif method in ("magnitude", "sparsegpt"):
            assert total == floor_count(sparsity, m * n)
        else:   # any method: the fraction exact up to rounding, over the matrix or every row
            rows = res.mask.sum(1)
            per_row = bool((rows == rows[0]).all()) and abs(int(rows[0]) - sparsity * n) < 1
            assert per_row or abs(total - sparsity * m * n) < 1
    else:
        nn_, mm = (int(v) for v in pattern.split(":"))
        assert (res.mask.reshape(m, n // mm, mm).sum(-1) == nn_).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", list(METHODS))
def test_half_precision_weights_come_back_in_their_dtype(method, dtype):
    w, h, _ = make_problem(8, 32, seed=8)
    res = run(method, w.to(dtype), h.float(), sparsity=0.5, pattern="2:4")
    assert res.weight.dtype == dtype
    assert torch.isfinite(res.weight).all()
    assert (res.weight[res.mask] == 0).all()
    assert (res.mask.reshape(8, 8, 4).sum(-1) == 2).all()


@pytest.mark.parametrize("method", ["sparsegpt", "apt"])
def test_second_order_methods_prune_dead_inputs(method):
    dead = (3, 10, 17)
    w, h, _ = make_problem(6, 24, seed=9, dead=dead)
    for pattern, sparsity in [("unstructured", 0.5), ("2:4", None)]:
        res = run(method, w, h, sparsity=sparsity, pattern=pattern)
        assert res.mask[:, list(dead)].all()
        assert (res.weight[:, list(dead)] == 0).all()
        assert torch.isfinite(res.weight).all()
        assert res.info.get("dead_inputs") == len(dead)


def test_wanda_prunes_dead_inputs_first():
    w, h, _ = make_problem(6, 24, seed=9, dead=(3, 10))
    res = prune_matrix(w, h, "wanda", sparsity=0.25)
    assert res.mask[:, [3, 10]].all()


def indefinite_hessian(n=16, neg=-0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.ones(n, dtype=torch.float64)
    lam[0] = neg
    return q @ torch.diag(lam) @ q.T       # mean(diag) = mean(lam) ~ 0.9


def test_cholesky_failure_is_retried_with_more_damping_and_recorded():
    h = indefinite_hessian()
    prep = prepare(h, 0.01)
    assert prep.retries == [0.01, 0.1]
    assert prep.damping == pytest.approx(1.0)
    r = prep.hinv_chol
    torch.testing.assert_close(r.T @ r, torch.linalg.inv(prep.hessian))
    w = torch.randn(4, 16, dtype=torch.float64)
    res = prune_matrix(w, h, "sparsegpt", sparsity=0.5)
    assert res.info["cholesky_retries"] == [0.01, 0.1]
    assert res.info["percdamp_used"] == pytest.approx(1.0)


def test_hopeless_hessian_raises_instead_of_falling_back():
    h = -torch.eye(8, dtype=torch.float64)      # negative definite: damping cannot fix it
    with pytest.raises(ValueError, match="not positive definite"):
        prune_matrix(torch.randn(3, 8), h, "sparsegpt", sparsity=0.5)


@pytest.mark.parametrize("unit", ["mean", "median", "diag"])
def test_damping_unit(unit):
    """lambda times the mean of diag H (dead inputs counted as 1), the median of the live ones,
    or each input's own H[j, j]."""
    _, h, _ = make_problem(1, 9, seed=3)
    h[4, :] = 0.0
    h[:, 4] = 0.0                                   # a dead input
    live = torch.diagonal(h)[[j for j in range(9) if j != 4]]
    fixed = torch.diagonal(h).clone()
    fixed[4] = 1.0
    scale = {"mean": fixed.mean(), "median": live.median(), "diag": fixed}[unit]
    prep = prepare(h, 0.3, unit=unit)
    expect = h.clone()
    expect[4, 4] = 1.0
    expect += torch.diag(0.3 * scale * torch.ones(9, dtype=h.dtype))
    torch.testing.assert_close(prep.hessian, expect)
    assert prep.info()["damp_unit"] == unit
    hd, dead = damped(h, 0.3, unit)                 # the same matrix, without the factorization
    torch.testing.assert_close(hd, expect)
    assert dead.tolist() == [j == 4 for j in range(9)]


def test_damping_units_of_the_solvers():
    """SparseGPT keeps the reference convention (mean); APT's default unit follows its search:
    diag H for ADMM, the median for the block-wise search."""
    w, h, _ = make_problem(4, 16, seed=2)
    assert prune_matrix(w, h, "sparsegpt", 0.5).info["damp_unit"] == "mean"
    assert prune_matrix(w, h, "apt", 0.5).info["damp_unit"] == "diag"
    assert prune_matrix(w, h, "apt", 0.5, search="blockwise").info["damp_unit"] == "median"
    assert prune_matrix(w, h, "apt", 0.5, damp_unit="mean").info["damp_unit"] == "mean"
    with pytest.raises(ValueError, match="damp_unit='max'"):
        prune_matrix(w, h, "apt", 0.5, damp_unit="max")


def test_prepare_factor_matches_trailing_inverses():
    _, h, _ = make_problem(1, 12, seed=11)
    prep = prepare(h, 0.01)
    r, hd = prep.hinv_chol, prep.hessian
    for j in (0, 5, 11):
        torch.testing.assert_close(r[j:, j:].T @ r[j:, j:], torch.linalg.inv(hd[j:, j:]))


def test_lowest_k_sampled_path_is_exact():
    """Large flat inputs go through a sampled bracket (``masks._kth_sampled``): same masks as
    a stable sort, with ties, constant runs and k at the ends; in float64 too (SparseGPT's CPU
    dtype), where the bracket must not fall back to a full selection."""
    from apt.pruning.masks import _SAMPLED_MIN, _kth_sampled, lowest_k
    gen = torch.Generator().manual_seed(5)
    n = _SAMPLED_MIN + 123
    for dt in (torch.float32, torch.float64):
        x = torch.randn(n, generator=gen, dtype=dt)
        for k in (n // 3, n // 2):
            assert torch.equal(_kth_sampled(x, k), torch.kthvalue(x, k).values), (dt, k)
    cases = [torch.randn(n, generator=gen), torch.randn(n, generator=gen, dtype=torch.float64),
             torch.randn(n, generator=gen).round(decimals=1),          # heavy ties
             torch.cat([torch.full((n // 2,), -1.0), torch.randn(n - n // 2, generator=gen)])]
    for scores in cases:
        order = torch.sort(scores, stable=True).indices
        for k in (1, 7, n // 3, n // 2, n // 2 + 1, n - 2, n - 1):
            want = torch.zeros(n, dtype=torch.bool)
            want[order[:k]] = True
            assert torch.equal(lowest_k(scores, k), want), k
            assert torch.equal(lowest_k(scores, k, dtype=torch.float32), want.float()), k


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32])
@pytest.mark.parametrize("dim", [None, 0, 1])
def test_lowest_k_is_exactly_the_k_lowest_with_ties_in_index_order(dim, dtype):
    """Also as a 0 / 1 float mask (the ADMM search's form): the same entries."""
    from apt.pruning.masks import lowest_k
    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 5, (7, 9), generator=gen).double()   # many ties
    size = scores.numel() if dim is None else scores.shape[dim]
    for k in range(size + 1):
        mask = lowest_k(scores, k, dim, dtype=dtype)
        assert mask.dtype == dtype and ((mask == 0) | (mask == 1)).all()
        mask = mask.bool()
        if dim is None:
            order = torch.sort(scores.flatten(), stable=True).indices[:k]
            want = torch.zeros(scores.numel(), dtype=torch.bool)
            want[order] = True
            want = want.reshape(scores.shape)
        else:
            order = torch.sort(scores, dim=dim, stable=True).indices.narrow(dim, 0, k)
            want = torch.zeros_like(scores, dtype=torch.bool).scatter_(dim, order, True)
        assert torch.equal(mask, want), (k, dim)


@pytest.mark.parametrize("n, m", [(2, 4), (4, 8), (1, 3), (3, 4), (1, 1), (5, 17), (200, 300)])
def test_lowest_in_groups_is_the_n_lowest_of_each_group_with_ties_in_index_order(n, m):
    """By pairwise ranks within each group (by a stable sort for m > 16, where the m^2 / 2
    comparisons would cost more): the same mask as a stable sort, with and without
    ties."""
    from apt.pruning.masks import lowest_in_groups
    gen = torch.Generator().manual_seed(n * 10 + m)
    rows, cols = 9, 6 * m
    for scores in (torch.randn(rows, cols, generator=gen),
                   torch.randint(0, 3, (rows, cols), generator=gen).double()):
        g = scores.reshape(rows, cols // m, m)
        order = torch.sort(g, dim=-1, stable=True).indices[..., :n]
        want = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, order, True).reshape(rows, cols)
        assert torch.equal(lowest_in_groups(scores, n, m), want)
        as_float = lowest_in_groups(scores, n, m, dtype=torch.float32)
        assert as_float.dtype == torch.float32 and torch.equal(as_float, want.float())


def test_lowest_k_into_a_given_buffer_is_the_same_mask():
    """``out`` (the ADMM loop's reused buffer, also scratch for the sampled bracket): the same
    mask as a fresh one, whatever the buffer held before, for every path (ties, sampled, dim)."""
    from apt.pruning.masks import _SAMPLED_MIN, lowest_k
    gen = torch.Generator().manual_seed(8)
    big = torch.randn(4, _SAMPLED_MIN // 4 + 5, generator=gen)
    cases = [(torch.randint(0, 5, (7, 9), generator=gen).float(), None),
             (torch.randint(0, 5, (7, 9), generator=gen).float(), 1),
             (big, None), (big.round(decimals=1), None)]
    for scores, dim in cases:
        size = scores.numel() if dim is None else scores.shape[dim]
        for k in (0, 1, size // 3, size // 2, size - 1, size):
            out = torch.full_like(scores, 7.0)
            got = lowest_k(scores, k, dim, dtype=torch.float32, out=out)
            assert got.data_ptr() == out.data_ptr()
            assert torch.equal(got, lowest_k(scores, k, dim).float()), (k, dim)
    with pytest.raises(ValueError, match="out must be"):
        lowest_k(big, 3, out=torch.empty_like(big, dtype=torch.float64), dtype=torch.float32)
