"""HessianAccumulator: the running (2/T) X X^T equals the one computed at once."""

from __future__ import annotations

import pytest
import torch

from apt.pruning import HessianAccumulator


def tokens(t=120, n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, n, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, n,
                                                                                 dtype=torch.float64)


@pytest.mark.parametrize("splits", [[120], [1, 119], [50, 50, 20], [7] * 17 + [1], [0, 60, 0, 60]])
def test_accumulator_equals_full_product_for_any_batch_split(splits):
    x = tokens()
    acc = HessianAccumulator(10, dtype=torch.float64)
    start = 0
    for s in splits:
        acc.add(x[start:start + s])
        start += s
    assert acc.ntokens == 120
    torch.testing.assert_close(acc.hessian, 2.0 / 120 * x.T @ x, rtol=1e-12, atol=1e-12)


def test_accumulator_takes_batched_sequences_and_casts():
    x = tokens().reshape(4, 30, 10)                    # (batch, seq, features), float64 in
    acc = HessianAccumulator(10)                        # float32 sum by default
    acc.add(x[:2].float())
    acc.add(x[2:].to(torch.bfloat16).float())
    flat = torch.cat([x[:2].reshape(-1, 10).float(), x[2:].to(torch.bfloat16).float()
                      .reshape(-1, 10)]).double()
    assert acc.hessian.dtype == torch.float32 and acc.ntokens == 120
    torch.testing.assert_close(acc.hessian.double(), 2.0 / 120 * flat.T @ flat, rtol=1e-5,
                               atol=1e-5)


def test_input_norms_are_the_column_norms_wanda_uses():
    x = tokens()
    acc = HessianAccumulator(10, dtype=torch.float64)
    acc.add(x[:70])
    acc.add(x[70:])
    torch.testing.assert_close(acc.input_norms(), x.norm(dim=0))
    torch.testing.assert_close(acc.input_sq_norms(), 2.0 / 120 * (x ** 2).sum(0))


def test_accumulator_usable_from_a_forward_hook():
    lin = torch.nn.Linear(10, 3).double()
    acc = HessianAccumulator(10, dtype=torch.float64)
    handle = lin.register_forward_hook(lambda _m, inp, _o: acc.add(inp[0]))
    x = tokens().reshape(3, 40, 10)
    with torch.no_grad():
        for b in x:
            lin(b)
    handle.remove()
    flat = x.reshape(-1, 10)
    torch.testing.assert_close(acc.hessian, 2.0 / 120 * flat.T @ flat)


def test_wrong_feature_count_is_refused():
    acc = HessianAccumulator(10)
    with pytest.raises(ValueError, match="11 features, expected 10"):
        acc.add(torch.zeros(3, 11))


@pytest.mark.parametrize("splits", [[120], [1, 119], [50, 50, 20], [0, 60, 0, 60]])
def test_cross_accumulator_equals_full_products_for_any_batch_split(splits):
    from apt.pruning.stats import CrossAccumulator

    x, d = tokens(), tokens(seed=1)
    acc = CrossAccumulator(10, dtype=torch.float64)
    start = 0
    for s in splits:
        acc.add(x[start:start + s], d[start:start + s])
        start += s
    assert acc.ntokens == 120
    torch.testing.assert_close(acc.hessian, 2.0 / 120 * x.T @ x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(acc.cross, 2.0 / 120 * d.T @ x, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="same tokens"):
        acc.add(x[:5], d[:4])


def test_dense_target_turns_the_dense_output_error_into_the_hessian_form():
    """||W D - W' X||^2 = tr((W' - W*) H (W' - W*)^T) + const for every W': the difference of
    the two sides is the same for unrelated W' (ridge negligible), and W* is the least-squares
    fit of the dense outputs from the pruned inputs."""
    from apt.pruning.stats import dense_target

    d = tokens(t=200, n=10, seed=2)
    x = d + 0.3 * tokens(t=200, n=10, seed=3)              # the pruned model's inputs
    w = torch.randn(6, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    h, c = 2.0 / 200 * x.T @ x, 2.0 / 200 * d.T @ x
    target = dense_target(w, h, c, ridge=1e-12)
    lstsq = torch.linalg.lstsq(x, d @ w.T).solution.T
    torch.testing.assert_close(target, lstsq, rtol=1e-8, atol=1e-8)
    gaps = []
    for seed in (5, 6, 7):
        w2 = torch.randn(6, 10, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        direct = 2.0 / 200 * ((d @ w.T - x @ w2.T) ** 2).sum()
        form = torch.trace((w2 - target) @ h @ (w2 - target).T)
        gaps.append(float(direct - form))
    assert max(gaps) - min(gaps) < 1e-9
    # the ridge pulls W* toward W; a dead input (H_jj = 0) keeps its dense weight
    x[:, 3] = 0.0
    h, c = 2.0 / 200 * x.T @ x, 2.0 / 200 * d.T @ x
    big = dense_target(w, h, c, ridge=1e6)
    torch.testing.assert_close(big, w, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dense_target(w, h, c, ridge=0.01)[:, 3], w[:, 3])
