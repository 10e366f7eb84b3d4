"""Reading a checkpoint saved in a compressed-tensors sparse format (``apt export``).

Such a folder keeps the pruned layers as ``<layer>.compressed`` / ``.bitmask`` / ``.shape``
(``.row_offsets`` for the bitmask format) tensors and names the format under
``quantization_config.sparsity_config`` in ``config.json``. transformers builds the architecture
from the config and compressed-tensors decompresses every weight; the dense tensors are loaded
into the model as they are, so the weights are the ones that were exported, bit for bit.

Only the two sparse formats below are accepted: the format name comes from a file, and
compressed-tensors resolves registry names it does not know by importing them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from apt.errors import AptError

#: compressed-tensors sparsity formats: any pattern (bitmask) and at most 2 non-zeros in every
#: 4 consecutive stored weights (2:4).
BITMASK = "sparse-bitmask"
SPARSE_24 = "sparse-24-bitmask"
SPARSE_FORMATS = (BITMASK, SPARSE_24)


def sparsity_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """The ``sparsity_config`` of a parsed ``config.json``, None for a dense checkpoint.

    AptError for a compressed-tensors config this loader does not read (quantized weights, an
    unknown sparsity format).
    """
    qc = config.get("quantization_config")
    if not isinstance(qc, dict) or qc.get("quant_method") != "compressed-tensors":
        return None
    if qc.get("config_groups"):
        raise AptError("this checkpoint has quantized weights (compressed-tensors config_groups); "
                       "apt reads only the sparsity-only formats " + ", ".join(SPARSE_FORMATS))
    sc = qc.get("sparsity_config") or None
    if sc is None:
        return None
    if sc.get("format") not in SPARSE_FORMATS:
        raise AptError(f"sparsity format {sc.get('format')!r} is not one apt reads; known: "
                       + ", ".join(SPARSE_FORMATS))
    return sc


def is_compressed(folder: str | Path) -> bool:
    """Whether ``folder/config.json`` names a compressed-tensors sparse format."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(config, dict) and sparsity_config(config) is not None


def decompressed_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint, dense, as compressed-tensors' own decompression gives it."""
    from compressed_tensors.compressors import ModelCompressor

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    sc = sparsity_config(config)
    if sc is None:
        raise AptError(f"{folder}: config.json names no compressed-tensors sparsity format")
    compressor = ModelCompressor.from_compression_config(config["quantization_config"])
    return dict(compressor.sparsity_compressor.decompress(str(folder)))


def load_compressed(folder: str | Path, dtype: torch.dtype | None = None):
    """The model of a compressed checkpoint folder, dense, in eval mode on the CPU.

    transformers builds the architecture from the config (without the compression entry) in
    ``dtype`` (default: the stored one), as ``from_pretrained`` would: buffers it computes itself,
    such as rotary frequencies, keep their own dtype. The decompressed tensors are copied into
    the parameters (cast to ``dtype`` if it differs), and tied weights stay tied. AptError
    when the files lack a parameter or hold one the architecture does not have.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(folder)
    state = decompressed_state_dict(folder)
    config = AutoConfig.from_pretrained(folder)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    if dtype is None:
        dtype = next(v.dtype for v in state.values() if v.dtype.is_floating_point)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    result = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise AptError(f"{folder}: the decompressed weights do not fit the architecture "
                       f"(missing {sorted(missing)[:3]}, unexpected "
                       f"{sorted(result.unexpected_keys)[:3]}); export the checkpoint again")
    model.eval()
    return model
