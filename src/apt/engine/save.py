"""The final pruned checkpoint: a standard HF folder plus ``prune_report.json``, written atomically.

A pruned model is a derivative of the model it was made from, so the licence files of a local
source folder (``NOTICE``, ``LICENSE``/``LICENCE`` files, Gemma's terms of use) are copied into
it: terms such as the Gemma Terms of Use ask that they go with every copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch import nn

from apt.io import atomic_directory, write_json_atomic

REPORT_NAME = "prune_report.json"
LICENCE_PATTERNS = ("NOTICE*", "LICENSE*", "LICENCE*", "*TERMS_OF_USE*")


def licence_files(folder: str | Path) -> list[Path]:
    """The licence files at the top of ``folder`` (none when it is not a local folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted({p for pattern in LICENCE_PATTERNS for p in folder.glob(pattern) if p.is_file()})


def save_checkpoint(model: nn.Module, tokenizer, out: str | Path, report: dict[str, Any]) -> Path:
    """Write ``out`` (safetensors, config, tokenizer, the source's licence files, report); it
    appears only once complete."""
    out = Path(out)
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for path in licence_files(getattr(model, "name_or_path", "") or ""):
            shutil.copyfile(path, tmp / path.name)
        write_json_atomic(tmp / REPORT_NAME, report)
    return out
