"""Forward hooks that accumulate the Hessian ``(2/T) sum x x^T`` of the inputs of prunable layers."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from apt.models.base import Adapter
from apt.pruning import HessianAccumulator


@contextlib.contextmanager
def accumulate_inputs(adapter: Adapter, block: nn.Module, names: list[str],
                      device: torch.device) -> Iterator[dict[str, HessianAccumulator]]:
    """While inside, every forward of ``block`` adds the inputs of ``names`` to their accumulators."""
    modules = adapter.prunable(block)
    taps = adapter.input_taps(block)
    accs: dict[str, HessianAccumulator] = {}
    handles = []
    for name in names:
        module = modules[name]
        accs[name] = acc = HessianAccumulator(adapter.in_features(module), device=device)
        if name in taps:
            source, fn = taps[name]

            def tap_hook(_m, inputs, output, acc=acc, fn=fn):
                acc.add(fn(inputs, output).detach())

            handles.append(source.register_forward_hook(tap_hook))
        else:
            def pre_hook(_m, inputs, acc=acc):
                acc.add(inputs[0].detach())

            handles.append(module.register_forward_pre_hook(pre_hook))
    try:
        yield accs
    finally:
        for h in handles:
            h.remove()
