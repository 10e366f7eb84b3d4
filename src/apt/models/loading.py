"""Loading a model and its tokenizer by source, with clear errors before any long work.

A local folder is checked before transformers sees it: ``config.json`` present and valid JSON,
a supported ``model_type``, weight files present (single or sharded safetensors, or PyTorch
``.bin``) and every safetensors header readable and consistent with the file size (a truncated
download is caught here), and after loading no parameter missing from the files. A folder written by ``apt export`` (a
compressed-tensors sparse format) is decompressed by :mod:`apt.models.compressed`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from apt.data.sources import resolve_model
from apt.errors import AptError
from apt.models.compressed import load_compressed, sparsity_config
from apt.models.registry import adapter_for

log = logging.getLogger(__name__)

_INDEX = "model.safetensors.index.json"


def _check_safetensors(path: Path) -> None:
    """Header parses and the data section the header promises is all there."""
    import struct

    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ValueError("file shorter than the 8-byte header length")
            (hlen,) = struct.unpack("<Q", raw)
            if hlen > size - 8:
                raise ValueError("header length beyond the end of the file")
            header = json.loads(fh.read(hlen))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                  default=0)
        if 8 + hlen + end > size:
            raise ValueError(f"the tensors need {8 + hlen + end} bytes, the file has {size}")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AptError(f"{path}: corrupt or truncated safetensors file ({exc}); download or "
                       "save the checkpoint again") from None


def check_folder(folder: Path, require_adapter: bool = True) -> dict:
    """Validate a local HF checkpoint folder; returns its config as a dict.

    With ``require_adapter`` an architecture no adapter knows is refused here, before the
    weights are read.
    """
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise AptError(f"{folder}: no config.json, so this is not a Hugging Face checkpoint "
                       "folder; pass a folder written by save_pretrained (or a hub id)")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AptError(f"{cfg_path}: not valid JSON ({exc}); the checkpoint is corrupt") from None
    if not isinstance(config, dict):
        raise AptError(f"{cfg_path}: expected a JSON object")

    if require_adapter:
        class _Cfg:  # adapter_for only needs .model_type
            model_type = config.get("model_type")

        adapter_for(_Cfg)
    index = folder / _INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
            raise AptError(f"{index}: corrupt shard index ({exc})") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise AptError(f"{folder}: missing weight shards {', '.join(missing)} listed in "
                           f"{_INDEX}; the checkpoint is incomplete")
        files = [folder / s for s in shards]
    else:
        files = sorted(folder.glob("*.safetensors"))
        if not files and not list(folder.glob("pytorch_model*.bin")):
            raise AptError(f"{folder}: no weights (model.safetensors or pytorch_model.bin); the "
                           "checkpoint is incomplete")
    for f in files:
        if f.suffix == ".safetensors":
            _check_safetensors(f)
    return config


def load_model(source: str, dtype: torch.dtype = torch.float32, device: str = "cpu",
               require_adapter: bool = False):
    """``(model, tokenizer)`` for a local folder or a hub id, in eval mode, on ``device``.

    ``require_adapter=True`` (pruning) refuses, before loading weights, an architecture that has
    no family adapter; evaluation can load any causal LM.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(source)
    compressed = False
    if Path(path).is_dir():
        compressed = sparsity_config(check_folder(Path(path), require_adapter)) is not None
    try:
        if compressed:  # transformers no longer reads these formats itself
            model, info = load_compressed(path, dtype), {}
        else:
            model, info = AutoModelForCausalLM.from_pretrained(path, dtype=dtype,
                                                               output_loading_info=True)
    except AptError:
        raise
    except Exception as exc:  # transformers raises OSError/ValueError/RuntimeError/SafetensorError
        raise AptError(f"could not load model {source!r} from {path}: {type(exc).__name__}: "
                       f"{exc}") from None
    if require_adapter:
        adapter_for(model)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in info.get("missing_keys", []) if k not in tied]
    if missing:
        raise AptError(f"{path}: the weight files lack {len(missing)} parameters (e.g. "
                       f"{', '.join(sorted(missing)[:3])}); the checkpoint is incomplete")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise AptError(f"could not load the tokenizer of {source!r} from {path}: "
                       f"{type(exc).__name__}: {exc}") from None
    model.eval()
    return model.to(device), tokenizer
