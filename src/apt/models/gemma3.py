"""Gemma 3 text models (``gemma3_text``, e.g. Gemma-3-270M): LLaMA-like pre-norm blocks with
four norms each (input, post-attention, pre- and post-feed-forward, plus q/k norms inside the
attention; all stay dense), an embedding scaled by sqrt(hidden size) inside ``embed_tokens``,
and two kinds of attention layer: sliding-window layers (local rotary base) and global layers
(global rotary base), interleaved as ``config.layer_types`` says. The model builds one attention
mask and one rotary table per kind before its blocks; :meth:`Gemma3Adapter.block_kinds` tells
the engine which block takes which, so that each block is run with its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from apt.models import llama
from apt.models.base import Adapter, final_softcap


@dataclass(frozen=True)
class Gemma3Adapter(Adapter):
    def block_kinds(self, model: nn.Module) -> list[str]:
        return list(model.config.layer_types[: model.config.num_hidden_layers])

    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head, then the final logit soft-capping when the config has one."""
        return final_softcap(model.config, super().head(model, hidden))


# The module names are LLaMA's (model.layers, self_attn.q_proj, ..., mlp.down_proj, model.norm).
ADAPTER = Gemma3Adapter(**{**vars(llama.ADAPTER), "family": "gemma3",
                           "model_types": ("gemma3_text",)})
