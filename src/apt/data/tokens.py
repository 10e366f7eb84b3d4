"""Text to token ids, and the token cache: one implementation for calibration and evaluation."""

from __future__ import annotations

import hashlib
import io
import json
import logging

import torch

from apt.io import write_bytes_atomic

log = logging.getLogger(__name__)


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of what the tokenizer does (vocabulary, merges, pre/post-processing)."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(repr((getattr(tokenizer, "add_bos_token", None),
                   getattr(tokenizer, "add_eos_token", None))).encode())
    return h.hexdigest()[:16]


def encode(tokenizer, text: str) -> torch.Tensor:
    """``tokenizer(text).input_ids`` (default special tokens) as a 1-D LongTensor."""
    import transformers

    # a whole corpus is longer than model_max_length on purpose: silence that warning
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        ids = tokenizer(text, return_attention_mask=False)["input_ids"]
    finally:
        transformers.logging.set_verbosity(level)
    return torch.tensor(ids, dtype=torch.long)


def cached(path, make):
    """The tensor saved at ``path``, or ``make()`` saved there atomically (``path`` None: no cache)."""
    if path is not None and path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a bad cache file is rebuilt, never trusted
            log.warning("ignoring unreadable token cache %s", path)
    value = make()
    if path is not None:
        buf = io.BytesIO()
        torch.save(value, buf)
        write_bytes_atomic(path, buf.getvalue())
    return value
