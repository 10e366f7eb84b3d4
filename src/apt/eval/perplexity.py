"""Perplexity by the standard protocol of SparseGPT and Wanda (see ``docs/protocol.md``).

The token stream of a whole test set is cut into non-overlapping windows of ``seqlen`` tokens,
the tail shorter than a window is dropped, and each window is one independent forward pass (no
context carried over). In a window of ``L`` tokens the model predicts tokens 2..L from the ones
before them, so each window contributes ``L - 1`` token NLLs.

Convention, matched to the reference code (SparseGPT ``datautils``/``opt_eval`` and Wanda
``lib/eval.py::eval_ppl_wikitext``): they take ``loss`` = mean cross-entropy of a window's
``L - 1`` shifted predictions, form ``nll = loss * L`` per window and report
``exp(sum(nll) / (windows * L))`` = ``exp(mean over windows of the window's mean NLL)``. Since
every window has the same ``L - 1`` predictions, that is exactly ``exp`` of the mean NLL over all
``windows * (L - 1)`` predicted tokens, which is what :func:`perplexity` computes (summing token
NLLs in float64 from float32 log-probabilities, whatever the model's dtype).

The stream is the dataset's text tokenized once, as the references do (the tokenizer's default
special tokens: a LLaMA tokenizer puts one BOS at the very start of the stream, none per window).
For the hub C4 set the stream is cut to ``256 * seqlen`` tokens, as in the references.

Memory: the logits of a batch are ``batch x seqlen x vocab`` floats, 0.5 GB for one window of
512 tokens of Gemma 3's 262k-token vocabulary and 2 GB at 2048, more than the rest of a small
model's forward. So the model's forward is stopped at its output layer (``lm_head``, found by
``get_output_embeddings``), and the logits and their token NLLs are computed from its input
hidden states a slice of positions at a time, each slice at most :data:`LOGIT_BUDGET` floats
(:func:`chunked_window_nlls`; any final soft-capping of the logits, as in Gemma 2, applied per
slice). A model without a findable output layer falls back to its full logits.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from apt.data.tokens import cached, encode, tokenizer_fingerprint
from apt.errors import AptError
from apt.models.base import final_softcap


#: datasets whose token stream the references cut to ``C4_WINDOWS * seqlen`` tokens
C4_WINDOWS = 256
CUT_DATASETS = ("c4",)
#: most logits (floats) held at once per slice of positions: 2**26 floats = 256 MiB in float32
#: (and as much again for their log-softmax); 256 positions of Gemma 3's vocabulary, 1365 of
#: SmolLM2's. Smaller slices cost time: each one reads the whole output matrix again.
LOGIT_BUDGET = 1 << 26


def model_context(model) -> int | None:
    """The longest sequence the model was built for, or ``None`` if it has no limit (Mamba)."""
    cfg = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_window(model, seqlen: int) -> None:
    if seqlen < 2:
        raise AptError(f"--seqlen {seqlen}: a window needs at least 2 tokens (one is predicted)")
    ctx = model_context(model)
    if ctx is not None and seqlen > ctx:
        raise AptError(f"--seqlen {seqlen} is longer than the model's context of {ctx} tokens; "
                       f"use --seqlen {ctx} or less")


def window_nlls(logits: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Sum of the token NLLs of each window (float64), from ``logits`` (B, L, V) of ``windows`` (B, L).

    Token ``t`` of a window is predicted by the logits at ``t - 1``; the first token is not.
    The labels are shifted, not the logits (as transformers' own loss does): slicing the logits
    would copy a (B, L-1, V) tensor, a few percent of the whole evaluation time.
    """
    b, length, vocab = logits.shape
    labels = torch.full((b, length), -100, dtype=torch.long, device=logits.device)
    labels[:, :-1] = windows[:, 1:].to(logits.device)
    nll = F.cross_entropy(logits.reshape(-1, vocab).float(), labels.reshape(-1),
                          ignore_index=-100, reduction="none")
    return nll.view(b, length).double().sum(dim=1)


class _HeadInput(Exception):
    def __init__(self, hidden: torch.Tensor):
        self.hidden = hidden


def _output_layer(model):
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    return head if isinstance(head, torch.nn.Module) else None


def chunked_window_nlls(model, windows: torch.Tensor, budget: int = LOGIT_BUDGET) -> torch.Tensor:
    """What :func:`window_nlls` gives for the model's logits of ``windows`` (B, L), with at most
    ``budget`` logits in memory at once (see the module docstring)."""
    head = _output_layer(model)
    if head is None:
        return window_nlls(model(input_ids=windows, use_cache=False).logits, windows)

    def stop(_module, args):
        raise _HeadInput(args[0])

    handle = head.register_forward_pre_hook(stop)
    try:
        out = model(input_ids=windows, use_cache=False)
    except _HeadInput as got:
        hidden = got.hidden
    else:  # the output layer was not called through its forward: use the logits as they are
        return window_nlls(out.logits, windows)
    finally:
        handle.remove()
    b, length = windows.shape
    config = getattr(model, "config", None)
    vocab = head.weight.shape[0] if hasattr(head, "weight") else model.config.vocab_size
    step = max(1, budget // (b * vocab))
    labels = windows[:, 1:].to(hidden.device)
    sums = torch.zeros(b, dtype=torch.float64, device=hidden.device)
    for start in range(0, length - 1, step):   # position t predicts token t + 1
        end = min(start + step, length - 1)
        logits = final_softcap(config, head(hidden[:, start:end])).float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                              labels[:, start:end].reshape(-1), reduction="none")
        sums += nll.view(b, end - start).double().sum(dim=1)
        del logits, nll
    return sums


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` alike: an unset index matches any."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


@torch.no_grad()
def perplexity(model, input_ids: torch.Tensor, seqlen: int, batch_size: int = 1,
               max_windows: int | None = None, device: str | torch.device | None = None,
               progress: bool = True) -> dict:
    """Perplexity of ``model`` on the 1-D token stream ``input_ids`` (see the module docstring).

    Returns ``ppl`` (= exp(nll_mean)), ``nll_mean`` (mean NLL per predicted token, nats),
    ``windows``, ``tokens`` (predicted tokens = windows * (seqlen - 1)), ``tokens_in_windows``
    (= windows * seqlen), ``stream_tokens`` (length of the stream before cutting), ``window_nll``
    (per-window NLL sums) and ``seconds`` / ``tokens_per_s`` (windows * seqlen / wall time).
    ``device``: where the windows go, the model's own device by default (it must be there).
    """
    input_ids = torch.as_tensor(input_ids).reshape(-1).long()
    check_window(model, seqlen)
    if batch_size < 1:
        raise AptError(f"--batch-size {batch_size}: must be at least 1")
    available = input_ids.numel() // seqlen
    if available == 0:
        raise AptError(f"the text has {input_ids.numel()} tokens, shorter than one window of "
                       f"{seqlen}; use a smaller --seqlen or a longer text")
    n = available if max_windows is None else min(available, int(max_windows))
    if n < 1:
        raise AptError(f"--max-windows {max_windows}: must be at least 1")
    home = next(model.parameters()).device
    if device is None:
        device = home
    elif not _same_device(torch.device(device), home):
        raise AptError(f"the model is on {home} but device={device} was asked: load it there "
                       f"(apt.models.load_model(..., device={str(device)!r}), as `apt eval ppl "
                       f"--device` does) or leave device unset")
    windows = input_ids[: n * seqlen].view(n, seqlen)

    was_training = model.training
    model.eval()
    sums = torch.zeros(n, dtype=torch.float64)
    start = time.perf_counter()
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"ppl (seqlen {seqlen})", unit="win", disable=not progress)
        for i in range(0, n, batch_size):
            batch = windows[i:i + batch_size].to(device)
            sums[i:i + batch.shape[0]] = chunked_window_nlls(model, batch).cpu()
            bar.update(batch.shape[0])
        bar.close()
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start

    tokens = n * (seqlen - 1)
    nll_mean = float(sums.sum() / tokens)
    return {
        "ppl": math.exp(nll_mean),
        "nll_mean": nll_mean,
        "windows": n,
        "windows_available": available,
        "tokens": tokens,
        "tokens_in_windows": n * seqlen,
        "stream_tokens": int(input_ids.numel()),
        "window_nll": sums.tolist(),
        "seconds": seconds,
        "tokens_per_s": n * seqlen / seconds if seconds > 0 else None,
    }


# --- token streams -------------------------------------------------------------------------------

def tokenize_text(tokenizer, text: str, cache_dir: str | Path | None = None) -> torch.Tensor:
    """``tokenizer(text).input_ids`` as a 1-D LongTensor, cached under ``cache_dir`` if given."""
    path = None
    if cache_dir is not None:
        key = hashlib.sha256((hashlib.sha256(text.encode("utf-8")).hexdigest()
                              + tokenizer_fingerprint(tokenizer)).encode()).hexdigest()[:32]
        path = Path(cache_dir) / "tokens" / f"{key}.pt"
    return cached(path, lambda: encode(tokenizer, text))


def dataset_tokens(tokenizer, dataset: str, seqlen: int, split: str = "test",
                   cache: bool = True) -> torch.Tensor:
    """The evaluation token stream of ``dataset`` (a name of :mod:`apt.data.sources` or a text file)."""
    from apt.data.sources import load_text
    from apt.paths import cache_dir

    text = load_text(dataset, split)
    ids = tokenize_text(tokenizer, text, cache_dir() if cache else None)
    if dataset in CUT_DATASETS:
        ids = ids[: C4_WINDOWS * seqlen]
    return ids


def evaluate_perplexity(model, tokenizer, dataset: str, seqlen: int, batch_size: int = 1,
                        max_windows: int | None = None, device=None, progress: bool = True,
                        cache: bool = True) -> dict:
    """Perplexity of ``model`` on ``dataset`` by the standard protocol; the command's one call."""
    check_window(model, seqlen)
    ids = dataset_tokens(tokenizer, dataset, seqlen, cache=cache)
    result = perplexity(model, ids, seqlen, batch_size=batch_size, max_windows=max_windows,
                        device=device, progress=progress)
    result["dataset"] = dataset
    result["stream_cut"] = (f"{C4_WINDOWS} x seqlen tokens" if dataset in CUT_DATASETS else None)
    return result


__all__ = ["perplexity", "window_nlls", "chunked_window_nlls", "LOGIT_BUDGET", "model_context", "check_window", "tokenize_text",
           "dataset_tokens", "evaluate_perplexity"]
