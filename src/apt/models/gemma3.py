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

from apt.models.base import Adapter


@dataclass(frozen=True)
class Gemma3Adapter(Adapter):
    def block_kinds(self, model: nn.Module) -> list[str]:
        return list(model.config.layer_types[: model.config.num_hidden_layers])

    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head, then the final logit soft-capping when the config has one."""
        logits = super().head(model, hidden)
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits


ADAPTER = Gemma3Adapter(
    family="gemma3",
    model_types=("gemma3_text",),
    blocks_path="model.layers",
    pre_paths=("model.embed_tokens", "model.rotary_emb"),
    head_paths=("model.norm", "lm_head"),
    groups=(
        ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        ("self_attn.o_proj",),
        ("mlp.gate_proj", "mlp.up_proj"),
        ("mlp.down_proj",),
    ),
)
