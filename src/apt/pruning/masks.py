"""Mask selection from scores: lowest scores are pruned.

Counts follow the published reference code (Wanda's ``int(cols * sparsity)`` per row, the
magnitude baseline's and SparseGPT's ``int(numel * sparsity)``): :func:`prune_count` is the floor,
with a tolerance so that e.g. ``0.29 * 100`` counts 29, not 28.
"""

from __future__ import annotations

import functools
import math

import torch

from apt.pruning.patterns import Pattern


def prune_count(sparsity: float, total: int) -> int:
    """How many of ``total`` weights a fraction ``sparsity`` prunes: ``floor(sparsity * total)``."""
    return int(math.floor(sparsity * total + 1e-9))


def lowest_k(scores: torch.Tensor, k: int, dim: int | None = None,
             dtype: torch.dtype = torch.bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """Mask (True = prune) of exactly the ``k`` lowest scores, over everything (``dim=None``) or
    along ``dim``; ties at the threshold are taken in index order.

    ``dtype``: of the mask; a floating dtype gives 1.0 where pruned and 0.0 elsewhere, ready to
    multiply with (the ADMM search's form, see :func:`_compare`). ``out``: a contiguous float32
    tensor shaped like ``scores`` that receives the mask (then ``dtype`` must be float32) and
    serves as scratch on the way, so that a loop calling this allocates no new matrix (on CPU a
    fresh buffer of many MB is page-faulted in at every use).

    A threshold from ``kthvalue`` instead of ``topk``: for k near half of a large block (the
    unstructured masks), CPU ``topk`` is about 5x slower and was a third of SparseGPT's time.
    """
    if out is not None and (dtype != torch.float32 or out.dtype != torch.float32
                            or out.shape != scores.shape or not out.is_contiguous()):
        raise ValueError("out must be a contiguous float32 tensor shaped like scores, with "
                         "dtype=torch.float32")
    flat = dim is None
    x = scores.reshape(1, -1) if flat else scores.movedim(dim, -1)
    buf = None if out is None else (out.reshape(1, -1) if flat else out.movedim(dim, -1))
    size = x.shape[-1]
    if k <= 0 or size == 0:
        mask = torch.zeros_like(x, dtype=dtype) if buf is None else buf.fill_(0.0)
    elif k >= size:
        mask = torch.ones_like(x, dtype=dtype) if buf is None else buf.fill_(1.0)
    else:
        kth = None
        if flat and size >= _SAMPLED_MIN:
            kth = _kth_sampled(x.reshape(-1), k, None if buf is None else buf.reshape(-1))
        if kth is None:
            kth = torch.kthvalue(x, k, dim=-1, keepdim=True).values
        at_most = _compare(torch.le, x, kth, buf)
        if bool((_count(at_most) == k).all()):
            mask = at_most                      # no surplus tie to break: skip the scan
        elif flat:
            # the first ``need`` ties in index order, by their positions (a handful, usually):
            # a cumulative sum over the whole matrix would copy it to int64 twice
            mask = _compare(torch.lt, x, kth, buf)
            need = k - int(_count(mask))
            first = torch.nonzero(x.reshape(-1) == kth.reshape(())).reshape(-1)[:need]
            mask.reshape(-1)[first] = 1.0
        else:
            at_most = at_most.bool()
            ties = x == kth
            need = k - _count(at_most & ~ties)
            mask = (at_most & ~ties) | (ties & (torch.cumsum(ties, -1) <= need))
            if buf is not None:
                mask = buf.copy_(mask)
        mask = mask.to(dtype)
    return mask.reshape(scores.shape) if flat else mask.movedim(-1, dim)


def _compare(op, x: torch.Tensor, y, out: torch.Tensor | None = None) -> torch.Tensor:
    """``op(x, y)`` (a comparison) as a float32 tensor of 0.0 / 1.0 (in ``out`` if given).

    On CPU a comparison that writes floats is about 5x faster than one that writes bools, and
    turning those floats into bools afterwards costs less than a comparison; products with a
    float mask are also far cheaper there than ``masked_fill``. Exact counts by ``_count``.
    """
    if out is None:
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    return op(x, y, out=out)


def _count(f: torch.Tensor) -> torch.Tensor:
    """Exact number of nonzero entries along the last dim of a 0/1 mask (bool or float), kept
    as a trailing dim of size 1."""
    if f.dtype != torch.bool and f.shape[-1] <= _FLOAT_EXACT:
        return f.sum(-1, keepdim=True)        # float32 sums of 0 / 1 are exact below 2^24
    # a bool .sum() first copies to int64 (5x slower); count_nonzero does not (on bools)
    return torch.count_nonzero(f.bool(), dim=-1).unsqueeze(-1)


_FLOAT_EXACT = 1 << 24
_EXACT_IN_FLOAT32 = (torch.float32, torch.bfloat16, torch.float16)
_SAMPLED_MIN = 1 << 16
_SAMPLE = 1 << 14


@functools.lru_cache(maxsize=8)
def _sample_index(size: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(0)
    return torch.randint(size, (_SAMPLE,), generator=g, device=device)


def _kth_sampled(x: torch.Tensor, k: int,
                 buf: torch.Tensor | None = None) -> torch.Tensor | None:
    """The ``k``-th smallest of a large flat ``x``, exactly, from a narrow band around it.

    A fixed-seed sample brackets the k-th value between two of its order statistics (8
    standard deviations of a sample quantile apart); only the values inside the bracket go
    through ``kthvalue``. None when the bracket misses (then the caller does the full
    selection), so the result never depends on the sample. About 4x faster than ``kthvalue``
    on a whole 1536 x 576 matrix, which the ADMM search selects from at every step. ``buf``: a
    float32 scratch shaped like ``x``.
    """
    size = x.numel()
    sample = x[_sample_index(size, x.device)]
    if not bool(torch.isfinite(sample).all()):
        return None
    q = k / size
    half = 4.0 * (q * (1.0 - q) / _SAMPLE) ** 0.5
    lo_i, hi_i = int((q - half) * _SAMPLE), int((q + half) * _SAMPLE) + 1
    inside = None
    need = k
    lo = hi = None
    if lo_i >= 0:
        lo = torch.kthvalue(sample, lo_i + 1).values
        inside = _compare(torch.ge, x, lo, buf)
        need = k - (size - int(_count(inside)))
    if hi_i < _SAMPLE:
        hi = torch.kthvalue(sample, hi_i + 1).values
        if inside is None:
            inside = _compare(torch.le, x, hi, buf)
        elif x.dtype in _EXACT_IN_FLOAT32:
            # lo <= x <= hi exactly where clamping leaves x as it is: one buffer, one pass less
            inside = _compare(torch.eq, torch.clamp(x, lo, hi, out=inside), x, inside)
        else:       # float64 would be rounded by the float32 buffer
            inside.mul_(_compare(torch.le, x, hi))
    band = x if inside is None else x[inside.bool()]
    if not 1 <= need <= band.numel():
        return None
    return torch.kthvalue(band, need).values


def lowest_in_groups(scores: torch.Tensor, n: int, m: int,
                     dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """Mask (True = prune) of the ``n`` lowest scores in every ``m`` consecutive columns of each
    row; ties are taken in index order. ``dtype`` as in :func:`lowest_k`.

    By ranks, not ``topk``: with the group positions laid out as ``m`` contiguous planes, each
    pair of positions is compared once over the whole matrix (``m (m - 1) / 2`` vectorized
    comparisons, in float32: see :func:`_compare`), which on CPU is 3-4x faster than ``topk``
    over millions of tiny groups (the ADMM search selects N:M candidates at every step) and
    breaks ties deterministically.
    """
    rows, cols = scores.shape
    if m > _RANK_MAX_M:       # m^2 / 2 passes would cost more than a sort
        groups = scores.reshape(rows, cols // m, m)
        idx = torch.sort(groups, dim=-1, stable=True).indices[..., :n]
        mask = torch.zeros_like(groups, dtype=dtype).scatter_(-1, idx, 1)
        return mask.reshape(rows, cols)
    planes = scores.reshape(rows, cols // m, m).permute(2, 0, 1).contiguous()   # (m, rows, G)
    # rank[i]: how many of the group come before position i; counted as "i comes after every
    # later position" (m - 1 - i) minus the later positions it comes before
    rank = torch.arange(m - 1, -1, -1, dtype=torch.float32, device=scores.device)
    rank = rank.view(m, 1, 1).expand(planes.shape).contiguous()
    first = torch.empty(planes.shape[1:], dtype=torch.float32, device=scores.device)
    for i in range(m):
        for j in range(i + 1, m):
            torch.le(planes[i], planes[j], out=first)        # i comes before j (ties: i < j)
            rank[j].add_(first)
            rank[i].sub_(first)
    return _compare(torch.lt, rank, n).to(dtype).permute(1, 2, 0).reshape(rows, cols)


_RANK_MAX_M = 16


def lowest_per_row(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask of the ``prune_count(sparsity, cols)`` lowest scores of each row."""
    return lowest_k(scores, prune_count(sparsity, scores.shape[1]), dim=1)


def lowest_overall(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask of the ``prune_count(sparsity, numel)`` lowest scores of the whole matrix."""
    return lowest_k(scores, prune_count(sparsity, scores.numel()))


def select(scores: torch.Tensor, pattern: Pattern, sparsity: float, per_row: bool) -> torch.Tensor:
    if pattern.structured:
        return lowest_in_groups(scores, pattern.n, pattern.m)
    return lowest_per_row(scores, sparsity) if per_row else lowest_overall(scores, sparsity)
