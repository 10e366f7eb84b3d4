"""GPT-2: its ``Conv1D`` layers store the weight transposed (in x out), so the adapter hands the
solvers ``weight.T`` (out x in) and writes the pruned matrix back transposed. ``c_attn`` holds
q, k and v in one matrix and is pruned as one."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from apt.models.base import Adapter


@dataclass(frozen=True)
class GPT2Adapter(Adapter):
    def get_weight(self, module: nn.Module) -> torch.Tensor:
        w = module.weight.data
        return w if isinstance(module, nn.Linear) else w.t()

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            module.weight.data.copy_(weight)
        else:
            module.weight.data.copy_(weight.t())


ADAPTER = GPT2Adapter(
    family="gpt2",
    model_types=("gpt2",),
    blocks_path="transformer.h",
    pre_paths=("transformer.wte", "transformer.wpe", "transformer.drop"),
    head_paths=("transformer.ln_f", "lm_head"),
    groups=(("attn.c_attn",), ("attn.c_proj",), ("mlp.c_fc",), ("mlp.c_proj",)),
)
