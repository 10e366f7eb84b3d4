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
from typing import Callable, Iterator

import torch
from torch import nn

from apt.models.base import Adapter
from apt.pruning import HessianAccumulator
from apt.pruning.stats import CrossAccumulator


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
def _watch_inputs(adapter: Adapter, block: nn.Module, names: list[str],
                  on_input: Callable[[str, torch.Tensor], None], stop: bool
                  ) -> Iterator[dict[str, str]]:
    """While inside, every forward of ``block`` calls ``on_input(name, x)`` with the input
    ``x`` of each of ``names``, once per distinct input tensor (under the first name that read
    it). Yields the alias map, filled on exit: name -> the name its input was given under."""
    modules = adapter.prunable(block)
    taps = adapter.input_taps(block)
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
        if name in taps:
            source, fn = taps[name]

            def tap_hook(_m, inputs, output, fn=fn, name=name):
                on_input(name, fn(inputs, output).detach())
                done(name)

            handles.append(source.register_forward_hook(tap_hook))
        else:
            def pre_hook(_m, inputs, name=name):
                x = inputs[0]
                if sharing.route(name, x) is None:
                    on_input(name, x.detach())
                done(name)

            handles.append(module.register_forward_pre_hook(pre_hook))
    owner: dict[str, str] = {}
    try:
        yield owner
    finally:
        for h in handles:
            h.remove()
        for name in names:
            target = name
            while sharing.alias.get(target):
                target = sharing.alias[target]
            owner[name] = target


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
    own = {name: make(adapter.in_features(modules[name]), device=device) for name in names}
    shared: dict[str, HessianAccumulator] = {}
    with _watch_inputs(adapter, block, names, lambda name, x: own[name].add(x), stop) as owner:
        yield shared
    shared.update({name: own[owner[name]] for name in names})


@contextlib.contextmanager
def accumulate_dense_target(adapter: Adapter, dense: nn.Module, block: nn.Module,
                            names: list[str], device: torch.device
                            ) -> Iterator[dict[str, CrossAccumulator]]:
    """Statistics for layers that reconstruct the *dense* model's outputs: forward the dense
    copy ``dense`` on the dense model's hidden states, then ``block`` on the pruned model's,
    sample by sample (dense first). Each name's accumulator gets the Hessian of the inputs of
    ``block`` and their cross product with the matching inputs of ``dense``
    (:class:`apt.pruning.stats.CrossAccumulator`)."""
    modules = adapter.prunable(block)
    last: dict[str, torch.Tensor] = {}
    own = {name: CrossAccumulator(adapter.in_features(modules[name]), device=device)
           for name in names}
    shared: dict[str, CrossAccumulator] = {}

    def record(name: str, x: torch.Tensor) -> None:
        last[name] = x

    def add(name: str, x: torch.Tensor) -> None:
        if name not in last:
            raise RuntimeError(f"{name}: no input of the dense block recorded before the pruned "
                               "block's forward")
        own[name].add(x, last.pop(name))

    with _watch_inputs(adapter, dense, names, record, True) as dense_owner, \
            _watch_inputs(adapter, block, names, add, True) as owner:
        yield shared
    if dense_owner != owner:
        raise RuntimeError("the dense and the pruned block share their layers' inputs "
                           "differently")
    shared.update({name: own[owner[name]] for name in names})
