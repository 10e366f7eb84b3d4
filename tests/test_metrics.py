import torch

from apt.pruning.metrics import layer_error_parts, relative_error


def test_relative_error_equals_direct_output_error():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 50, generator=g, dtype=torch.float64)
    W = torch.randn(5, 12, generator=g, dtype=torch.float64)
    W2 = W.clone()
    W2[:, ::3] = 0
    H = (2 / 50) * X @ X.T
    direct = ((W - W2) @ X).pow(2).sum() / (W @ X).pow(2).sum()
    assert abs(relative_error(W, W2, H) - float(direct)) < 1e-12
    num, den = layer_error_parts(W, W, H)
    assert num == 0 and den > 0
