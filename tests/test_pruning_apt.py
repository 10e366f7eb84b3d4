"""APT solver: oracle tests on tiny problems (brute force from H, lstsq), exact patterns, dtypes.

Every oracle here is computed directly from the (damped) Hessian, not from the Cholesky factor
the solver uses, so a wrong use of R shows up as a mismatch.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from apt.pruning import apt as apt_solver
from apt.pruning import prune_matrix
from apt.pruning.apt_options import AptOptions
from apt.pruning.hessian import prepare
from apt.pruning.mrp import mrp_update, refit_exact

D = torch.float64


def problem(m=5, n=8, T=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n, n, generator=g, dtype=D) / n ** 0.5 + torch.eye(n, dtype=D)
    X = mix @ torch.randn(n, T, generator=g, dtype=D)
    W = torch.randn(m, n, generator=g, dtype=D)
    return W, (2.0 / T) * X @ X.T, X


def apt_damped(H, percdamp=apt_solver.DEFAULT_PERCDAMP, search="blockwise"):
    """H with the damping APT adds (in the default unit of ``search``)."""
    return prepare(H, percdamp, unit=AptOptions.SEARCH_DEFAULTS[search]["damp_unit"]).hessian


def err(W0, W1, H):
    d = (W1.to(D) - W0.to(D))
    return float(((d @ H.to(D)) * d).sum())


def constrained_ls(w, H, free, zero):
    """Brute force: minimise (v - w) H (v - w)^T over v[free], with v[zero] = 0 and the other
    entries of v equal to w (frozen). Returns v."""
    v = w.clone()
    v[zero] = 0.0
    F = torch.tensor(free, dtype=torch.long)
    other = torch.tensor([j for j in range(len(w)) if j not in free], dtype=torch.long)
    # gradient on F: H[F,F] v_F + H[F,other] v_other - (H w)_F = 0
    rhs = (H @ w)[F] - H[F][:, other] @ v[other]
    v[F] = torch.linalg.solve(H[F][:, F], rhs)
    return v


# ---------------------------------------------------------------------------- MRP algebra
def test_mrp_update_equals_least_squares_refit():
    W, H, _ = problem(m=6, n=7)
    G = torch.linalg.inv(H)
    mask = torch.rand(6, 7, generator=torch.Generator().manual_seed(1)) < 0.5
    dw, loss = mrp_update(W, G, mask)
    for r in range(6):
        Q = mask[r].nonzero().squeeze(1).tolist()
        K = [j for j in range(7) if j not in Q]
        v = constrained_ls(W[r], H, K, Q)
        torch.testing.assert_close(W[r] + dw[r], v, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(loss[r], torch.tensor(0.5 * err(W[r:r + 1], v[None], H), dtype=D),
                                   rtol=1e-8, atol=1e-12)


def test_blockwise_unstructured_is_obs_column_by_column_on_its_mask():
    """Without the refit, the block-wise search removes each pruned weight in column order with
    the later columns free and the earlier ones frozen (brute-force least squares for each), and
    each block prunes the lowest w^2 / [H^-1]_jj of its weights as they stand, to the exact
    cumulative count."""
    import math
    W, H, _ = problem(m=4, n=8)
    res = prune_matrix(W, H, "apt", 0.5, "unstructured", blocksize=4, percdamp=0.01,
                       search="blockwise", refit=False)
    Hd = apt_damped(H, 0.01)
    mask = res.mask
    at_block2 = []
    for r in range(4):
        v = W[r].clone()
        for j in range(8):
            if j == 4:
                at_block2.append(v.clone())
            if mask[r, j]:
                v = constrained_ls(v, Hd, [k for k in range(j + 1, 8)], [j])
        torch.testing.assert_close(res.weight[r], v, rtol=1e-7, atol=1e-9)
    full = torch.diagonal(torch.linalg.inv(Hd))
    for cols, weights in ((slice(0, 4), W), (slice(4, 8), torch.stack(at_block2))):
        scores = weights[:, cols].pow(2) / full[cols]
        k = int(mask[:, cols].sum())
        assert k == (math.floor(0.5 * 4 * 4) if cols.start == 0 else 16 - 8)
        assert scores[mask[:, cols]].max() <= scores[~mask[:, cols]].min()


def constrained_ls_frozen(v, H, sub, zero):
    """Columns outside ``sub`` frozen at ``v``: minimise the error of the row relative to ``v``
    (the earlier columns' change is done); returns the new values on ``sub``."""
    w = v.clone()
    free = [j for j in sub if j not in zero]
    out = constrained_ls(w, H, free, zero)
    return out[sub]


# ---------------------------------------------------------------------------- N:M
@pytest.mark.parametrize("nm", [(2, 4), (4, 8), (1, 3)])
def test_nm_choice_equals_exhaustive_search(nm):
    N, M = nm
    W, H, _ = problem(m=6, n=2 * M, seed=3)
    res = prune_matrix(W, H, "apt", None, f"{N}:{M}", blocksize=128, percdamp=0.01, refit=False,
                       search="blockwise")
    Hd = apt_damped(H, 0.01)
    n = 2 * M
    for r in range(6):
        v = W[r].clone()
        chosen = []
        for g0 in (0, M):
            U = list(range(g0, n))
            best = None
            for Q in itertools.combinations(range(g0, g0 + M), N):
                cand = v.clone()
                cand[U] = constrained_ls(v, Hd, [j for j in U if j not in Q], list(Q))[U]
                loss = err(v[None], cand[None], Hd)
                if best is None or loss < best[0]:
                    best = (loss, Q, cand)
            chosen.append(best[1])
            v = best[2]
        expect = torch.zeros(n, dtype=torch.bool)
        expect[list(chosen[0] + chosen[1])] = True
        assert torch.equal(res.mask[r], expect)
        torch.testing.assert_close(res.weight[r], v, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_nm_single_group_beats_sparsegpt(pattern):
    """With one group per row the joint choice is the exact optimum over all masks."""
    N, M = map(int, pattern.split(":"))
    for seed in range(3):
        W, H, _ = problem(m=8, n=M, seed=seed)
        a = prune_matrix(W, H, "apt", None, pattern, refit=False, search="blockwise")
        s = prune_matrix(W, H, "sparsegpt", None, pattern)
        assert err(W, a.weight, H) <= err(W, s.weight, H) * (1 + 1e-9) + 1e-12


# ---------------------------------------------------------------------------- refit
@pytest.mark.parametrize("search", apt_solver.SEARCHES)
def test_refit_exact_equals_lstsq(search):
    W, H, X = problem(m=5, n=8, T=40)
    res = prune_matrix(W, H, "apt", 0.5, "unstructured", percdamp=0.0, refit="exact", search=search)
    for r in range(5):
        K = (~res.mask[r]).nonzero().squeeze(1)
        sol = torch.linalg.lstsq(X[K].T, (W[r] @ X).unsqueeze(1)).solution.squeeze(1)
        torch.testing.assert_close(res.weight[r, K], sol, rtol=1e-7, atol=1e-9)
        assert (res.weight[r, res.mask[r]] == 0).all()


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("unstructured", 0.7),
                                              ("2:4", None), ("4:8", None)])
@pytest.mark.parametrize("search", apt_solver.SEARCHES)
def test_refit_never_increases_error(pattern, sparsity, search):
    W, H, _ = problem(m=16, n=32, T=128, seed=5)
    out = {}
    for refit in (False, "cg", "exact"):
        r = prune_matrix(W, H, "apt", sparsity, pattern, blocksize=8, refit=refit, search=search)
        out[refit] = (r.mask, err(W, r.weight, H), r.weight)
    assert torch.equal(out[False][0], out["cg"][0]) and torch.equal(out[False][0], out["exact"][0])
    assert out["cg"][1] <= out[False][1] * (1 + 1e-6)   # float32 CG: rounding only
    Hd = apt_damped(H, search=search)   # the exact refit is optimal for the damped objective
    ex = refit_exact(W, Hd, out["exact"][0])
    torch.testing.assert_close(ex, out["exact"][2])
    cg = out["cg"][2]
    assert err(W, ex, Hd) <= err(W, cg, Hd) * (1 + 1e-9)


# ---------------------------------------------------------------------------- patterns, dtypes
@pytest.mark.parametrize("search", apt_solver.SEARCHES)
@pytest.mark.parametrize("sparsity", [0.5, 0.6, 0.7])
def test_unstructured_count_exact(search, sparsity):
    W, H, _ = problem(m=7, n=20, T=80, seed=2)
    r = prune_matrix(W, H, "apt", sparsity, "unstructured", blocksize=8, search=search)
    import math
    assert int(r.mask.sum()) == math.floor(sparsity * 7 * 20 + 1e-9)
    assert (r.weight[r.mask] == 0).all()


@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:3"])
@pytest.mark.parametrize("search", apt_solver.SEARCHES)
def test_nm_pattern_exact(pattern, search):
    N, M = map(int, pattern.split(":"))
    W, H, _ = problem(m=6, n=4 * M, seed=4)
    r = prune_matrix(W, H, "apt", None, pattern, blocksize=2 * M, search=search)
    assert (r.mask.reshape(6, -1, M).sum(-1) == N).all()
    assert (r.weight[r.mask] == 0).all() and (r.weight[~r.mask] != 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtype_and_device_preserved(dtype):
    """CPU here; the code never names a device (every tensor is made on the weight's device)."""
    W, H, _ = problem(m=8, n=16)
    r = prune_matrix(W.to(dtype), H.float(), "apt", 0.5, "unstructured", blocksize=8)
    assert r.weight.dtype == dtype and r.weight.device == W.device and r.mask.dtype == torch.bool
    assert r.weight.shape == W.shape and (r.weight[r.mask] == 0).all()


@pytest.mark.parametrize("search", apt_solver.SEARCHES)
@pytest.mark.parametrize("pattern,sparsity", [("2:4", None), ("unstructured", 0.25)])
def test_dead_inputs_pruned(search, pattern, sparsity):
    W, H, _ = problem(m=4, n=8)
    H[2, :] = 0
    H[:, 2] = 0
    r = prune_matrix(W, H, "apt", sparsity, pattern, search=search)
    assert r.mask[:, 2].all() and (r.weight[:, 2] == 0).all() and r.info["dead_inputs"] == 1
    assert int(r.mask.sum()) == (16 if pattern == "2:4" else 8)


@pytest.mark.parametrize("options,names", [
    ({"bogus": 1}, r"unknown APT option\(s\) \['bogus'\]; accepted: search"),
    ({"mask_rule": "score"}, "unknown APT option"),        # removed with the block-wise rules
    ({"refit": "maybe"}, r"refit='maybe': expected 'cg' \| 'exact' \| False \| None"),
    ({"refit": True}, "refit=True"),
    ({"compute_dtype": "half"}, "compute_dtype='half'"),
    ({"search": "nope"}, "search='nope'"),
    ({"admm_iters": 3, "admm_ramp": 4}, r"admm_ramp \(4\) must be <= admm_iters \(3\)"),
    ({"admm_rho": 0.0}, r"admm_rho=0.0: expected None \| float > 0.0"),
    ({"admm_iters": 2.5}, "admm_iters=2.5: expected int >= 1"),
    ({"admm_gemm_dtype": "int8"}, "admm_gemm_dtype='int8'"),
    ({"admm_exact_steps": -1}, "admm_exact_steps=-1"),
    ({"refit_iters": 0}, "refit_iters=0"),
    ({"damp_unit": "max"}, "damp_unit='max'"),
])
def test_bad_options_are_refused_with_the_field_and_what_it_accepts(options, names):
    W, H, _ = problem(m=4, n=8)
    with pytest.raises(ValueError, match=names):
        prune_matrix(W, H, "apt", 0.5, "unstructured", **options)


def test_options_are_frozen_and_resolved_per_search():
    import dataclasses
    opts = AptOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.search = "blockwise"
    assert opts.resolved().refit is False and opts.resolved().damp_unit == "diag"
    bw = AptOptions(search="blockwise").resolved()
    assert (bw.refit, bw.refit_iters, bw.damp_unit) == ("cg", 5, "median")
    assert AptOptions(search="blockwise", refit=False).resolved().refit is False   # kept
    for f in dataclasses.fields(AptOptions):
        assert f.metadata["help"], f.name                   # every option is described


def test_admm_gemm_dtype_auto_is_recorded():
    """"auto" takes bfloat16 only where it runs natively, and the result records what ran."""
    from apt.pruning.apt import native_bfloat16
    W, H, _ = problem(m=4, n=8)
    r = prune_matrix(W, H, "apt", 0.5, "unstructured")
    want = "bfloat16" if native_bfloat16(torch.device("cpu")) else "float32"
    assert r.info["admm_gemm_dtype"] == want
    r = prune_matrix(W, H, "apt", 0.5, "unstructured", admm_gemm_dtype="same")
    assert r.info["admm_gemm_dtype"] == "float32"


def test_damping_follows_the_calibration_size_within_the_measured_range():
    assert apt_solver.damping_for(1536, 64 * 512) == pytest.approx(3 * 1536 / 32768)
    # the default 16 x 512 calibration tokens keep the fixed default on SmolLM2's layers
    assert apt_solver.damping_for(576, 8192) == apt_solver.DEFAULT_PERCDAMP    # 0.21 capped
    assert apt_solver.damping_for(1536, 8192) == apt_solver.DEFAULT_PERCDAMP
    assert apt_solver.damping_for(4096, 128 * 2048) == apt_solver.DAMP_MIN     # 0.047 floored
    # more tokens never damp more
    values = [apt_solver.damping_for(1024, t) for t in (1000, 4000, 16000, 64000, 10 ** 6)]
    assert values == sorted(values, reverse=True)


def test_prune_matrix_takes_the_damping_from_the_tokens_unless_given():
    W, H, _ = problem(m=8, n=32, seed=3)
    used = lambda **kw: prune_matrix(W, H, "apt", 0.5, **kw).info["percdamp_used"]  # noqa: E731
    assert used(tokens=1500) == pytest.approx(apt_solver.damping_for(32, 1500))   # 0.064
    assert used() == apt_solver.DEFAULT_PERCDAMP                 # tokens unknown: fixed default
    assert used(tokens=400, percdamp=0.3) == 0.3                 # an explicit damping wins
    # SparseGPT keeps its reference damping whatever the tokens
    s = prune_matrix(W, H, "sparsegpt", 0.5, tokens=400)
    assert s.info["percdamp_used"] == pytest.approx(0.01)


# ---------------------------------------------------------------------------- against SparseGPT
def realistic_problem(rows, cols, seed):
    """Inputs as LLM layers see them: log-normal channel scales, a few outlier channels 20x
    larger, and a shared low-rank component that correlates the inputs; T = 4 x inputs."""
    g = torch.Generator().manual_seed(seed)
    T = 4 * cols
    scale = torch.exp(0.75 * torch.randn(cols, generator=g))
    scale[torch.randperm(cols, generator=g)[:max(1, cols // 64)]] *= 20.0
    low = torch.randn(T, 8, generator=g) @ torch.randn(8, cols, generator=g)
    X = (torch.randn(T, cols, generator=g) + low) * scale
    W = torch.randn(rows, cols, generator=g) / cols ** 0.5
    return W, 2 * X.t() @ X / T


@pytest.mark.parametrize("shape", [(128, 128), (256, 96), (64, 256)])
@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("unstructured", 0.7),
                                              ("2:4", None), ("4:8", None)])
def test_default_apt_has_a_lower_layer_error_than_sparsegpt(shape, pattern, sparsity):
    """APT's defaults (float32 weights, as the engine gives them) against SparseGPT's, each
    scored on the undamped Hessian it was given: the in-sample layer error ||(W - W') X||^2."""
    W, H = realistic_problem(*shape, seed=sum(shape))
    a = prune_matrix(W, H, "apt", sparsity, pattern)
    s = prune_matrix(W, H, "sparsegpt", sparsity, pattern)
    assert err(W, a.weight, H) < err(W, s.weight, H)


@pytest.mark.parametrize("pattern,sparsity,ramp,rho", [
    ("2:4", None, 2, 1.25), ("4:8", None, 2, 1.25), ("unstructured", 0.7, 2, 1.5),
    ("unstructured", 0.8, 2, 1.5), ("unstructured", 0.5, 8, 1.5), ("unstructured", 0.6, 8, 1.5)])
def test_admm_ramp_and_rho_default_per_pattern_family(pattern, sparsity, ramp, rho):
    """Left unset, the ramp and rho follow the pattern (AptOptions.PATTERN_DEFAULTS), the
    result records what ran, a value given is kept, and the ramp never exceeds the steps."""
    W, H, _ = problem(m=4, n=16)
    r = prune_matrix(W, H, "apt", sparsity, pattern)
    assert (r.info["admm_ramp"], r.info["admm_rho"]) == (ramp, rho)
    r = prune_matrix(W, H, "apt", sparsity, pattern, admm_ramp=3, admm_rho=2.0)
    assert (r.info["admm_ramp"], r.info["admm_rho"]) == (3, 2.0)
    r = prune_matrix(W, H, "apt", sparsity, pattern, admm_iters=1)
    assert r.info["admm_ramp"] == 1


@pytest.mark.parametrize("shape", [(128, 128), (256, 96), (64, 256)])
@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.75), ("unstructured", 0.8),
                                              ("2:4", None), ("4:8", None)])
def test_pattern_defaults_beat_the_previous_ramp_and_rho(shape, pattern, sparsity):
    """The per-pattern ramp and rho at N:M and high unstructured sparsity: a lower in-sample
    layer error than the previous setting of every pattern (AptOptions.PREVIOUS_DEFAULTS)."""
    W, H = realistic_problem(*shape, seed=sum(shape))
    new = prune_matrix(W, H, "apt", sparsity, pattern)
    old = prune_matrix(W, H, "apt", sparsity, pattern, **AptOptions.PREVIOUS_DEFAULTS)
    assert (new.info["admm_ramp"], new.info["admm_rho"]) != (old.info["admm_ramp"],
                                                             old.info["admm_rho"])
    assert err(W, new.weight, H) < err(W, old.weight, H)
