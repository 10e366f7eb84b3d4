"""Calibration sampling: ``nsamples`` windows of ``seqlen`` tokens, seeded.

INTERFACE (stable): ``sample_calibration(tokenizer, dataset, nsamples, seqlen, seed) -> LongTensor``
of shape (nsamples, seqlen).

Two rules, both driven by one ``random.Random(seed)`` exactly as the SparseGPT/Wanda loaders
drive the global ``random`` after ``random.seed(seed)``, so a given tokenizer and text give the
reference repos' windows:

- ``documents`` (the standard rule, used for C4): for each sample, draw a random document
  (``randint(0, ndocs - 1)``) until one has **more than** ``seqlen`` tokens, then a random window
  of it (``randint(0, ntokens - seqlen - 1)``). Documents are tokenized one by one, as drawn.
- ``stream`` (the references' rule for WikiText-2 and PTB, and the fallback for texts whose
  documents are short): the split's text (:func:`apt.data.sources.load_text`) is tokenized as one
  stream and each window starts at ``randint(0, ntokens - seqlen - 1)``.

Hub ``c4`` uses ``documents``, hub ``wikitext2``/``ptb`` use ``stream``; for the offline texts and
local files the rule is chosen automatically: ``documents`` when at least ``nsamples`` documents
are longer than ``seqlen`` tokens (so the windows come from many documents), else ``stream``.

Windows are drawn independently and may overlap, as in the references; asking for more tokens
than the text has (``nsamples * seqlen > ntokens``) is allowed but logged as a warning. A text
with no more than ``seqlen`` tokens is an error.

Tokenized texts of offline and local datasets are cached under ``apt.paths.cache_dir()/tokens``,
keyed by the tokenizer's fingerprint, the dataset's identity and the split (atomic writes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re

import torch

from apt.data import sources
from apt.data.tokens import cached, encode, tokenizer_fingerprint
from apt.errors import AptError

log = logging.getLogger(__name__)

RULES = ("auto", "documents", "stream")
MAX_MISSES = 10_000
_FIXED_RULES = {"c4": "documents", "wikitext2": "stream", "ptb": "stream"}


# ------------------------------------------------------------------------------ tokenization


def _cache_path(tokenizer, dataset: str, split: str, what: str):
    from apt.paths import cache_dir

    ident = sources.dataset_identity(dataset, split)
    if ident["kind"] == "hub":
        return None  # hub texts are cached by `datasets`; tokenizing them again is cheap enough
    key = hashlib.sha256(json.dumps([tokenizer_fingerprint(tokenizer), ident, what],
                                    sort_keys=True).encode()).hexdigest()[:20]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(dataset).rsplit("/", 1)[-1])[:40]
    return cache_dir() / "tokens" / f"{slug}-{split}-{what}-{key}.pt"


def tokenize_stream(tokenizer, dataset: str, split: str) -> torch.Tensor:
    """The split's text (``load_text``) as one 1-D LongTensor of token ids (cached)."""
    return cached(_cache_path(tokenizer, dataset, split, "stream"),
                   lambda: encode(tokenizer, sources.load_text(dataset, split)))


def tokenize_documents(tokenizer, dataset: str, split: str) -> list[torch.Tensor]:
    """Each document of the split tokenized on its own (cached as ids + offsets)."""
    def make():
        docs = sources.load_documents(dataset, split)
        parts = [encode(tokenizer, d) for d in docs]
        lengths = torch.tensor([len(p) for p in parts], dtype=torch.long)
        return {"ids": torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long),
                "lengths": lengths}

    packed = cached(_cache_path(tokenizer, dataset, split, "documents"), make)
    return list(torch.split(packed["ids"], packed["lengths"].tolist()))


# ---------------------------------------------------------------------------------- sampling


def windows_from_documents(docs, nsamples: int, seqlen: int, seed: int,
                           encode=lambda d: d) -> torch.Tensor:
    """The standard rule on ``docs`` (``encode(doc)`` gives a 1-D tensor of ids)."""
    rng = random.Random(seed)
    out = []
    for _ in range(nsamples):
        misses = 0
        while True:
            ids = encode(docs[rng.randint(0, len(docs) - 1)])
            if ids.numel() > seqlen:
                break
            misses += 1
            if misses > MAX_MISSES:
                raise AptError(f"{MAX_MISSES} documents drawn in a row had no more than {seqlen} "
                               "tokens; use a shorter seqlen or the stream rule")
        start = rng.randint(0, ids.numel() - seqlen - 1)
        out.append(ids[start:start + seqlen])
    return torch.stack(out).long()


def windows_from_stream(ids: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """``nsamples`` windows at independent random starts of one token stream."""
    rng = random.Random(seed)
    starts = [rng.randint(0, ids.numel() - seqlen - 1) for _ in range(nsamples)]
    return torch.stack([ids[s:s + seqlen] for s in starts]).long()


def choose_rule(doc_lengths: list[int], nsamples: int, seqlen: int) -> str:
    """``documents`` if at least ``nsamples`` documents exceed ``seqlen`` tokens, else ``stream``."""
    return "documents" if sum(n > seqlen for n in doc_lengths) >= nsamples else "stream"


def _validate(nsamples: int, seqlen: int) -> None:
    if int(nsamples) < 1 or int(seqlen) < 1:
        raise AptError(f"nsamples and seqlen must be positive (got {nsamples}, {seqlen})")


def sample_calibration_with_info(tokenizer, dataset: str, nsamples: int, seqlen: int,
                                 seed: int = 0, split: str = "train",
                                 rule: str = "auto") -> tuple[torch.Tensor, dict]:
    """:func:`sample_calibration` plus a dict saying which rule ran and on how many tokens."""
    _validate(nsamples, seqlen)
    if rule not in RULES:
        raise AptError(f"unknown sampling rule {rule!r}; known: {', '.join(RULES)}")
    dataset = str(dataset)
    if rule == "auto":
        rule = _FIXED_RULES.get(dataset, "auto")
    info = {"dataset": dataset, "split": split, "nsamples": int(nsamples), "seqlen": int(seqlen),
            "seed": int(seed)}
    if rule == "documents" and dataset in sources.HUB_DATASETS:
        docs = sources.document_sequence(dataset, split)
        samples = windows_from_documents(docs, nsamples, seqlen, seed,
                                         encode=lambda d: encode(tokenizer, str(d)))
        return samples, {**info, "rule": "documents", "documents": len(docs)}
    if rule in ("auto", "documents"):
        docs = tokenize_documents(tokenizer, dataset, split)
        lengths = [d.numel() for d in docs]
        if rule == "auto":
            rule = choose_rule(lengths, nsamples, seqlen)
        if rule == "documents":
            if max(lengths, default=0) <= seqlen:
                raise AptError(f"{dataset} ({split}): no document has more than {seqlen} tokens "
                               f"(longest: {max(lengths, default=0)}); use a shorter seqlen")
            samples = windows_from_documents(docs, nsamples, seqlen, seed)
            return samples, {**info, "rule": "documents", "documents": len(docs),
                             "tokens": sum(lengths)}
    ids = tokenize_stream(tokenizer, dataset, split)
    if ids.numel() <= seqlen:
        raise AptError(f"{dataset} ({split}): {ids.numel()} tokens, not more than one window of "
                       f"{seqlen}; use a shorter --seqlen or a larger text")
    if nsamples * seqlen > ids.numel():
        log.warning("%s (%s): %d x %d tokens asked from a text of %d: windows will overlap",
                    dataset, split, nsamples, seqlen, ids.numel())
    return windows_from_stream(ids, nsamples, seqlen, seed), {**info, "rule": "stream",
                                                              "tokens": ids.numel()}


def sample_calibration(tokenizer, dataset: str, nsamples: int, seqlen: int, seed: int = 0,
                       split: str = "train") -> torch.Tensor:
    """``nsamples`` windows of ``seqlen`` token ids, a LongTensor (nsamples, seqlen)."""
    return sample_calibration_with_info(tokenizer, dataset, nsamples, seqlen, seed, split)[0]


# -------------------------------------------------------------------------- the calib command


def model_max_positions(config) -> int | None:
    """The longest input the model's position encoding allows (None: no limit, e.g. Mamba)."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def build_calibration_set(model: str, dataset: str, nsamples: int, seqlen: int, seed: int = 0,
                          split: str = "train") -> dict:
    """``{"input_ids": LongTensor (nsamples, seqlen), "settings": {...}}`` for ``apt calib``."""
    from transformers import AutoConfig, AutoTokenizer

    from apt.provenance import environment

    _validate(nsamples, seqlen)
    path = sources.resolve_model(model)
    try:
        config = AutoConfig.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - hub/network/corrupt folder: the user can fix it
        raise AptError(f"could not load the config/tokenizer of model {model!r} ({path}): "
                       f"{type(exc).__name__}: {exc}") from None
    limit = model_max_positions(config)
    if limit is not None and seqlen > limit:
        raise AptError(f"--seqlen {seqlen} is longer than model {model!r} accepts "
                       f"(max_position_embeddings {limit}); use --seqlen {limit} or less")
    samples, info = sample_calibration_with_info(tokenizer, dataset, nsamples, seqlen, seed, split)
    settings = {"model": model, "model_path": path, "tokenizer": tokenizer_fingerprint(tokenizer),
                **info, "dataset_identity": sources.dataset_identity(dataset, split),
                "environment": environment()}
    return {"input_ids": samples, "settings": settings}


__all__ = ["sample_calibration", "sample_calibration_with_info", "build_calibration_set",
           "tokenize_stream", "tokenize_documents", "tokenizer_fingerprint",
           "windows_from_documents", "windows_from_stream", "choose_rule", "model_max_positions"]
