"""Inputs of the first block, captured by running the model's own forward.

A pre-forward hook on block 0 records the positional arguments and *all* keyword arguments the
model passes (attention mask, position ids, rotary ``position_embeddings``, cache position...)
and stops the forward with an exception. Whatever a transformers version computes before its
blocks therefore reaches them unchanged. Only the modules that run before the blocks are moved
to the device; the blocks stay where they are.

The extra arguments usually do not depend on the sample (same length, no padding): they are
stored once and shared when equal, so a 4-D mask is not kept ``nsamples`` times.

Some models pass different arguments to different blocks (Gemma 3: a sliding-window mask and a
local rotary table to its sliding layers, a causal mask and a global table to its global ones).
For those the adapter names each block's kind (:meth:`Adapter.block_kinds`), and the arguments
are recorded at the first block of each kind, within the same forward: the blocks before it
are replaced by the identity for that forward (their output is not needed, only what the model
computes before its blocks). :meth:`BlockInputs.use_block` then selects a block's arguments.
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
    kinds: list[str] | None = None                       # per block (None: all the same)
    by_kind: dict[str, tuple[list[tuple], list[dict[str, Any]]]] = field(default_factory=dict)

    def use_block(self, index: int) -> None:
        """Make :meth:`call` pass the arguments that the model gives block ``index``."""
        if self.kinds is not None:
            self.args, self.kwargs = self.by_kind[self.kinds[index]]

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


def _first_of_each_kind(kinds: list[str] | None) -> dict[int, str]:
    """Block index -> kind, for the first block of each kind (block 0 alone when all agree)."""
    if kinds is None:
        return {0: ""}
    firsts: dict[int, str] = {}
    for i, kind in enumerate(kinds):
        if kind not in firsts.values():
            firsts[i] = kind
    return firsts


def _identity(*args, **kwargs):
    return args[0] if args else kwargs["hidden_states"]


@torch.no_grad()
def capture_block_inputs(model: nn.Module, adapter: Adapter, samples: torch.Tensor,
                         device: torch.device | str) -> BlockInputs:
    """Hidden states and arguments of block 0 for each row of ``samples`` (LongTensor K x L),
    and, where the adapter names block kinds, the arguments of the first block of each kind."""
    device = torch.device(device)
    blocks = adapter.blocks(model)
    kinds = adapter.block_kinds(model)
    if kinds is not None and len(kinds) != len(blocks):
        raise ValueError(f"{adapter.family}: {len(kinds)} block kinds for {len(blocks)} blocks")
    record_at = _first_of_each_kind(kinds)
    last = max(record_at)
    pre = adapter.pre_modules(model)
    homes = [next(m.parameters(), torch.empty(0)).device for m in pre]
    record: dict[int, tuple[tuple, dict]] = {}

    def hook_for(index):
        def hook(_module, args, kwargs):
            record[index] = (args, kwargs)
            if index == last:
                raise _Stop
        return hook

    handles = [blocks[i].register_forward_pre_hook(hook_for(i), with_kwargs=True)
               for i in record_at]
    for i in range(last):   # blocks before the last recorded one: skipped in this forward
        blocks[i].forward = _identity
    inputs = BlockInputs(hidden=[], kinds=kinds)
    per_kind: dict[str, tuple[list, list]] = {kind: ([], []) for kind in record_at.values()}
    try:
        for m in pre:
            m.to(device)
        for row in samples:
            record.clear()
            try:
                model(input_ids=row.unsqueeze(0).to(device), use_cache=False)
            except _Stop:
                pass
            if set(record) != set(record_at):
                raise RuntimeError("the model's forward did not reach its first block")
            for index, kind in record_at.items():
                args, kwargs = record[index][0], dict(record[index][1])
                if args:
                    hidden, rest = args[0], tuple(args[1:])
                else:
                    hidden, rest = kwargs.pop("hidden_states"), ()
                if index == 0:
                    inputs.hidden.append(hidden.detach())
                kind_args, kind_kwargs = per_kind[kind]
                if kind_args:
                    rest = _share(rest, kind_args[0])
                    kwargs = {k: _share(v, kind_kwargs[0].get(k)) for k, v in kwargs.items()}
                kind_args.append(rest)
                kind_kwargs.append(kwargs)
    finally:
        for handle in handles:
            handle.remove()
        for i in range(last):
            del blocks[i].forward
        for m, home in zip(pre, homes):
            m.to(home)
    inputs.by_kind = per_kind if kinds is not None else {}
    inputs.args, inputs.kwargs = per_kind[record_at[0]]
    return inputs
