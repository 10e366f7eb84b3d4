"""Inputs of the first block, captured by running the model's own forward.

A pre-forward hook on block 0 records the positional arguments and *all* keyword arguments the
model passes (attention mask, position ids, rotary ``position_embeddings``, cache position...)
and stops the forward with an exception. Whatever a transformers version computes before its
blocks therefore reaches them unchanged. Only the modules that run before the blocks are moved
to the device; the blocks stay where they are.

The extra arguments usually do not depend on the sample (same length, no padding): they are
stored once and shared when equal, so a 4-D mask is not kept ``nsamples`` times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from apt.models.base import Adapter


class _Stop(Exception):
    pass


@dataclass
class BlockInputs:
    """Hidden states (one ``(1, L, d)`` tensor per sample) and the other arguments of a block."""

    hidden: list[torch.Tensor]
    args: list[tuple] = field(default_factory=list)      # per sample, without hidden
    kwargs: list[dict[str, Any]] = field(default_factory=list)

    def call(self, block: nn.Module, i: int, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Run ``block`` on sample ``i`` and return its hidden-state output."""
        out = block(self.hidden[i] if hidden is None else hidden, *self.args[i], **self.kwargs[i])
        return block_output(out)


def block_output(out: Any) -> torch.Tensor:
    """Blocks return a tensor (transformers 5) or a tuple whose first item is the hidden state."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"unexpected block output of type {type(out).__name__}")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
                and bool(torch.equal(a, b)))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    try:
        return bool(a is b or a == b)
    except Exception:
        return False


def _share(value: Any, first: Any) -> Any:
    """``first`` where equal to ``value`` (shares memory across samples), else ``value``."""
    return first if _equal(value, first) else value


@torch.no_grad()
def capture_block_inputs(model: nn.Module, adapter: Adapter, samples: torch.Tensor,
                         device: torch.device | str) -> BlockInputs:
    """Hidden states and arguments of block 0 for each row of ``samples`` (LongTensor K x L)."""
    device = torch.device(device)
    block0 = adapter.blocks(model)[0]
    pre = adapter.pre_modules(model)
    homes = [next(m.parameters(), torch.empty(0)).device for m in pre]
    record: dict[str, Any] = {}

    def hook(_module, args, kwargs):
        record["args"], record["kwargs"] = args, kwargs
        raise _Stop

    handle = block0.register_forward_pre_hook(hook, with_kwargs=True)
    inputs = BlockInputs(hidden=[])
    try:
        for m in pre:
            m.to(device)
        for row in samples:
            record.clear()
            try:
                model(input_ids=row.unsqueeze(0).to(device), use_cache=False)
            except _Stop:
                pass
            if "args" not in record:
                raise RuntimeError("the model's forward did not reach its first block")
            args, kwargs = record["args"], dict(record["kwargs"])
            if args:
                hidden, rest = args[0], tuple(args[1:])
            else:
                hidden, rest = kwargs.pop("hidden_states"), ()
            inputs.hidden.append(hidden.detach())
            if inputs.args:
                rest = _share(rest, inputs.args[0])
                kwargs = {k: _share(v, inputs.kwargs[0].get(k)) for k, v in kwargs.items()}
            inputs.args.append(rest)
            inputs.kwargs.append(kwargs)
    finally:
        handle.remove()
        for m, home in zip(pre, homes):
            m.to(home)
    return inputs
