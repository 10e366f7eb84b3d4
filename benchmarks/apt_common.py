"""Shared helpers of the APT exploratory benchmarks: problems, a plain SparseGPT, the layer error."""

from __future__ import annotations

import torch

from apt.pruning.hessian import prepare


def synthetic(m=256, n=384, T=2048, seed=0, dtype=torch.float64):
    """W random, H = 2/T X X^T from correlated X (random mixing of a few hundred latent dims)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n, n, generator=g) / n ** 0.5 + torch.eye(n)
    scales = torch.exp(torch.randn(n, generator=g))
    X = (mix @ torch.randn(n, T, generator=g)) * scales.unsqueeze(1)
    H = (2.0 / T) * X @ X.T
    W = torch.randn(m, n, generator=g)
    return W.to(dtype), H.to(dtype)


def rel_error(W0, W1, H):
    """tr(dW H dW^T) / tr(W H W^T) with the undamped H."""
    H = H.to(torch.float64)
    d = (W1.to(torch.float64) - W0.to(torch.float64))
    W0 = W0.to(torch.float64)
    return float(((d @ H) * d).sum() / ((W0 @ H) * W0).sum())


def sparsegpt_plain(W, H, sparsity=0.5, prunen=0, prunem=0, blocksize=128, percdamp=0.01):
    """The reference algorithm (IST-DASLab sparsegpt.py fasterprune), on prepare()'s R."""
    W = W.clone().to(torch.float64)
    prep = prepare(H, percdamp)
    Hinv = prep.hinv_chol
    W[:, prep.dead] = 0
    m, n = W.shape
    mask = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, n, blocksize):
        i2 = min(i1 + blocksize, n)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if prunen == 0:
            tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            mask1 = tmp <= thresh
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i:(i + prunem)] ** 2 / (torch.diag(Hinv1)[i:(i + prunem)].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        mask[:, i1:i2] = mask1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W, mask
