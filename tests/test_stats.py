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
