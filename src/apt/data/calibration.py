"""Calibration sampling: ``nsamples`` windows of ``seqlen`` tokens, seeded.

INTERFACE (stable): ``sample_calibration(tokenizer, dataset, nsamples, seqlen, seed) -> LongTensor``
of shape (nsamples, seqlen). Standard rule: draw a random document until it has more than
``seqlen`` tokens, then a random ``seqlen``-token window of it. (Stub: to be completed by the data
issue with the fallback for short-document texts and caching.)
"""

from __future__ import annotations

import random

import torch

from apt.data.sources import load_documents
from apt.errors import AptError


def sample_calibration(tokenizer, dataset: str, nsamples: int, seqlen: int, seed: int = 0,
                       split: str = "train") -> torch.Tensor:
    docs = load_documents(dataset, split)
    ids = tokenizer("\n\n".join(docs), return_tensors="pt").input_ids[0]
    if ids.numel() <= seqlen:
        raise AptError(f"{dataset}: {ids.numel()} tokens, fewer than one window of {seqlen}")
    rng = random.Random(seed)
    starts = [rng.randint(0, ids.numel() - seqlen - 1) for _ in range(nsamples)]
    return torch.stack([ids[s:s + seqlen] for s in starts])
