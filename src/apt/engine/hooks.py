"""Forward hooks that accumulate the Hessian ``(2/T) sum x x^T`` of the inputs of prunable layers.

Once every watched layer has seen its input in a forward, the hooks raise :class:`StopBlock`:
the rest of that forward (e.g. the MLP down projection and residual when only statistics are
wanted) is not computed. Callers run such forwards through :func:`stats_forward`.

Layers that read the very same input tensor (q/k/v of an attention, gate/up of an MLP) share one
accumulator: the products ``x x^T`` are computed once per input, not once per layer. Sharing is
decided by tensor identity in the first forward and checked in every later one.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from apt.models.base import Adapter
from apt.pruning import HessianAccumulator


class StopBlock(Exception):
    """Raised by the hooks once all watched inputs of the current forward are recorded."""


def stats_forward(fn, *args, **kwargs) -> None:
    """Call ``fn`` (a block forward) for its hooks' sake; an early stop is normal."""
    try:
        fn(*args, **kwargs)
    except StopBlock:
        pass


class _Sharing:
    """Per forward: the last input tensor added and the accumulator it went to."""

    def __init__(self) -> None:
        self.last_x: torch.Tensor | None = None
        self.last_name: str | None = None
        self.alias: dict[str, str | None] = {}   # name -> name whose accumulator it shares

    def route(self, name: str, x: torch.Tensor) -> str | None:
        """The name whose accumulator ``x`` is already in (None: add it to ``name``'s)."""
        same = self.last_name if (self.last_x is not None and x is self.last_x) else None
        if name in self.alias and self.alias[name] != same:
            raise RuntimeError(f"input sharing of {name} changed between forwards")
        self.alias[name] = same
        if same is None:
            self.last_x, self.last_name = x, name
        return same


@contextlib.contextmanager
def accumulate_inputs(adapter: Adapter, block: nn.Module, names: list[str],
                      device: torch.device, make=HessianAccumulator, stop: bool = True
                      ) -> Iterator[dict[str, HessianAccumulator]]:
    """While inside, every forward of ``block`` adds the inputs of ``names`` to accumulators.

    The yielded dict maps each name to its accumulator (several names may map to one object).
    ``make(n, device)``: the accumulator of a layer of ``n`` inputs (default the Hessian's;
    :class:`apt.pruning.stats.NormAccumulator` where only the input norms are needed).
    ``stop=False``: no :class:`StopBlock`, the forwards run to the end (their outputs wanted).
    """
    modules = adapter.prunable(block)
    taps = adapter.input_taps(block)
    own: dict[str, HessianAccumulator] = {}
    sharing = _Sharing()
    seen: set[str] = set()

    def reset(_m, _args):
        seen.clear()

    def done(name: str) -> None:
        seen.add(name)
        if stop and len(seen) == len(names):
            raise StopBlock

    handles = [block.register_forward_pre_hook(reset)]
    for name in names:
        module = modules[name]
        own[name] = acc = make(adapter.in_features(module), device=device)
        if name in taps:
            source, fn = taps[name]

            def tap_hook(_m, inputs, output, acc=acc, fn=fn, name=name):
                acc.add(fn(inputs, output).detach())
                done(name)

            handles.append(source.register_forward_hook(tap_hook))
        else:
            def pre_hook(_m, inputs, acc=acc, name=name):
                x = inputs[0]
                if sharing.route(name, x) is None:
                    acc.add(x.detach())
                done(name)

            handles.append(module.register_forward_pre_hook(pre_hook))
    shared: dict[str, HessianAccumulator] = {}
    try:
        yield shared
    finally:
        for h in handles:
            h.remove()
        for name in names:
            target = name
            while sharing.alias.get(target):
                target = sharing.alias[target]
            shared[name] = own[target]
