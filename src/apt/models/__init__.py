"""Model families: one adapter per family; loading by source.

INTERFACE (stable): ``load_model(source, dtype=torch.float32, device="cpu") -> (model, tokenizer)``
where ``source`` is anything :func:`apt.data.sources.resolve_model` accepts. (Stub: to be
completed by the engine issue with adapters and checks for missing/corrupt checkpoints.)
"""

from __future__ import annotations

import torch

from apt.data.sources import resolve_model


def load_model(source: str, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(source)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer
