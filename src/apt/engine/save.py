"""The final pruned checkpoint: a standard HF folder plus ``prune_report.json``, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from apt.io import atomic_directory, write_json_atomic

REPORT_NAME = "prune_report.json"


def save_checkpoint(model: nn.Module, tokenizer, out: str | Path, report: dict[str, Any]) -> Path:
    """Write ``out`` (safetensors, config, tokenizer, report); it appears only once complete."""
    out = Path(out)
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / REPORT_NAME, report)
    return out
