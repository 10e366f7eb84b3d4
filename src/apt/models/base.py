"""What the engine needs to know about a model family: the :class:`Adapter` interface.

An adapter names, by attribute paths, where the blocks are (a ``ModuleList``), which modules run
before them (embeddings, positions, rotary tables: moved to the device while the inputs of the
first block are captured), which modules turn the last block's output into logits, and which
linear layers of a block are prunable, in groups that follow the order of computation
(attention q/k/v, then the output projection, then the MLP...). Weights are always handed to the
solvers as ``out x in`` matrices; an adapter whose layers store them otherwise (GPT-2's
``Conv1D``) overrides :meth:`Adapter.get_weight` / :meth:`Adapter.set_weight`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

#: ``fn(module_inputs, module_output) -> tensor`` giving the input of a prunable layer from
#: another module's forward, for layers whose own forward is never called (their weight is
#: used directly, e.g. Mamba's ``dt_proj``).
TapFn = Callable[[tuple, torch.Tensor], torch.Tensor]


def get_path(root: nn.Module, path: str) -> nn.Module | None:
    """``root.a.b.c`` for ``path = "a.b.c"``; None when an attribute on the way is None/absent."""
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def final_softcap(config, logits: torch.Tensor) -> torch.Tensor:
    """``cap * tanh(logits / cap)`` where the config has a ``final_logit_softcapping`` (Gemma 2
    and 3 models may), the logits unchanged otherwise: what those models do after their head."""
    cap = getattr(config, "final_logit_softcapping", None)
    return logits if cap is None else torch.tanh(logits / cap) * cap


@dataclass(frozen=True)
class Adapter:
    family: str
    model_types: tuple[str, ...]
    blocks_path: str
    pre_paths: tuple[str, ...]
    head_paths: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]

    # --- structure -----------------------------------------------------------------------
    def blocks(self, model: nn.Module) -> nn.ModuleList:
        blocks = get_path(model, self.blocks_path)
        if not isinstance(blocks, nn.ModuleList):
            raise TypeError(f"{self.family}: expected a ModuleList at {self.blocks_path}")
        return blocks

    def pre_modules(self, model: nn.Module) -> list[nn.Module]:
        return [m for m in (get_path(model, p) for p in self.pre_paths) if m is not None]

    def head_modules(self, model: nn.Module) -> list[nn.Module]:
        return [m for m in (get_path(model, p) for p in self.head_paths) if m is not None]

    def prunable_names(self) -> list[str]:
        return [name for group in self.groups for name in group]

    def prunable(self, block: nn.Module) -> dict[str, nn.Module]:
        """Prunable layers of one block, name (relative to the block) -> module, in order."""
        out = {}
        for name in self.prunable_names():
            module = get_path(block, name)
            if module is None:
                raise TypeError(f"{self.family}: block has no module {name!r}")
            out[name] = module
        return out

    def block_kinds(self, model: nn.Module) -> list[str] | None:
        """Per block, the kind of arguments the model passes it (e.g. sliding-window or global
        attention: another mask and rotary table), or None when every block gets the same."""
        return None

    def input_taps(self, block: nn.Module) -> dict[str, tuple[nn.Module, TapFn]]:
        """Prunable layers whose input must be read from another module's forward (default none)."""
        return {}

    # --- weights as out x in --------------------------------------------------------------
    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return module.weight.data

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        module.weight.data.copy_(weight)

    def in_features(self, module: nn.Module) -> int:
        return self.get_weight(module).shape[1]

    # --- after the blocks -------------------------------------------------------------------
    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the output of the last block (final norm, projections, LM head)."""
        for module in self.head_modules(model):
            param = next(module.parameters(), None)
            if param is not None:
                hidden = hidden.to(param.dtype)
            hidden = module(hidden)
        return hidden

    def max_positions(self, config) -> int | None:
        """The longest sequence the model accepts (None: no limit, e.g. state-space models)."""
        for key in ("max_position_embeddings", "n_positions"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None
