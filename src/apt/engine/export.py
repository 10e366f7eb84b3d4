"""Exporting a pruned checkpoint in a compressed-tensors sparse format.

``apt prune`` writes every weight dense, zeros included. Here the pruned layers (those its
``prune_report.json`` lists) are stored in one of compressed-tensors' sparsity formats: the
bitmask format (the non-zero values plus one bit per weight, for any pattern) or the 2:4 format
(half of each row plus the bitmask, when at most 2 of every 4 consecutive stored weights are
non-zero), with the ``sparsity_config`` entry in ``config.json`` that names it. The other tensors
(embeddings, norms, biases) stay dense. compressed-tensors does the compression.

Every setting is checked before the model is read: the format against the pruned pattern, the
dtypes. Then, before anything is written, each pruned layer is checked to be as sparse as the
report claims, in the pattern it claims, and, for the 2:4 format, stored in the layout it needs.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from apt.engine.save import REPORT_NAME
from apt.errors import AptError
from apt.io import atomic_directory, write_json_atomic
from apt.models.compressed import BITMASK, SPARSE_24, SPARSE_FORMATS, sparsity_config
from apt.pruning.patterns import Pattern, parse_pattern

#: ``compressed`` picks the 2:4 format for a 2:4 checkpoint of ``out x in`` linear layers and the
#: bitmask format for every other one.
AUTO = "compressed"
FORMATS = (AUTO, *SPARSE_FORMATS)
DTYPES = ("float32", "float16", "bfloat16")
EXPORT_REPORT = "export_report.json"
TWO_FOUR = Pattern(2, 4)


@dataclass(frozen=True)
class ExportSettings:
    """What to write: ``format`` (one of :data:`FORMATS`) and ``dtype`` (None keeps the stored)."""

    format: str = AUTO
    dtype: str | None = None

    def __post_init__(self):
        if self.format not in FORMATS:
            raise AptError(f"--format {self.format!r}: unknown; known: {', '.join(FORMATS)}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise AptError(f"--dtype {self.dtype!r}: the sparse formats store {', '.join(DTYPES)}")


@dataclass(frozen=True)
class PruneClaim:
    """What ``prune_report.json`` says was pruned, and the dtype ``config.json`` says is stored."""

    family: str
    pattern: Pattern
    sparsity: float
    modules: dict[str, float]       # module name -> fraction of its weights set to zero
    dtype: str


def read_claim(folder: Path) -> PruneClaim:
    """The pruning a checkpoint folder records; AptError when it is not an ``apt prune`` output."""
    cfg_path, rep_path = folder / "config.json", folder / REPORT_NAME
    if not folder.is_dir() or not cfg_path.is_file():
        raise AptError(f"--model {folder}: not a checkpoint folder (no config.json); pass the "
                       "--out folder of `apt prune`")
    if not rep_path.is_file():
        raise AptError(f"--model {folder}: no {REPORT_NAME}, so nothing says which layers were "
                       "pruned and in which pattern; export a folder written by `apt prune`")
    try:
        config = json.loads(cfg_path.read_text())
        report = json.loads(rep_path.read_text())
        settings = report["settings"]
        pattern = parse_pattern(settings["pattern"])
        modules = {r["name"]: float(r["sparsity"]) for r in report["modules"]}
        sparsity = float(settings["sparsity"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise AptError(f"--model {folder}: unreadable {REPORT_NAME} or config.json "
                       f"({type(exc).__name__}: {exc}); prune the model again") from None
    if sparsity_config(config) is not None:
        raise AptError(f"--model {folder}: already exported in a sparse format")
    if not modules:
        raise AptError(f"--model {folder}: {REPORT_NAME} lists no pruned layers")
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    if dtype not in DTYPES:
        raise AptError(f"--model {folder}: weights stored as {dtype}; the sparse formats are "
                       f"exported from {', '.join(DTYPES)} checkpoints")
    return PruneClaim(family=str(report.get("family", "")), pattern=pattern, sparsity=sparsity,
                      modules=modules, dtype=dtype)


def requested_format(pattern: Pattern, fmt: str) -> str:
    """The format to write for a checkpoint pruned to ``pattern`` (the stored layout is checked
    once the model is loaded); AptError for a format the pattern does not fit."""
    if fmt == SPARSE_24 and pattern != TWO_FOUR:
        raise AptError(f"--format {SPARSE_24}: the checkpoint is pruned {pattern}, and only 2:4 "
                       f"has this format's layout (2 values kept of every 4); use --format "
                       f"{BITMASK} (any pattern) or --format {AUTO}")
    if fmt == AUTO:
        return SPARSE_24 if pattern == TWO_FOUR else BITMASK
    return fmt


def stored_bytes(fmt: str | None, shape: tuple[int, ...], nonzeros: int, itemsize: int) -> int:
    """Bytes of one weight's tensors in ``fmt`` (None: dense), from the formats' definitions.

    Bitmask: the non-zero values, ``rows x ceil(cols / 8)`` mask bytes, one int64 row offset per
    row and the int64 shape. 2:4: half of each row's values, the same mask and the shape.
    """
    if fmt is None:
        return math.prod(shape) * itemsize
    rows, cols = shape
    mask = rows * ((cols + 7) // 8)
    if fmt == BITMASK:
        return nonzeros * itemsize + mask + 8 * rows + 8 * 2
    if fmt == SPARSE_24:
        return rows * (cols // 2) * itemsize + mask + 8 * 2
    raise ValueError(f"unknown format {fmt!r}")


def _pattern_holds(weight: torch.Tensor, pattern: Pattern) -> bool:
    """``weight`` (out x in) has at least ``n`` zeros in every ``m`` consecutive inputs."""
    if weight.shape[1] % pattern.m:
        return False
    zeros = (weight == 0).reshape(weight.shape[0], -1, pattern.m).sum(-1)
    return bool((zeros >= pattern.n).all())


def fits_24(stored: torch.Tensor) -> bool:
    """At most 2 non-zeros in every 4 consecutive weights of each stored row."""
    if stored.dim() != 2 or stored.shape[1] % 4:
        return False
    return bool(((stored != 0).reshape(-1, 4).sum(-1) <= 2).all())


def verify_sparsity(model: nn.Module, adapter, claim: PruneClaim) -> dict[str, dict[str, Any]]:
    """Each claimed layer, checked to hold its pattern and its share of zeros; its figures."""
    out = {}
    for name, claimed in claim.modules.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise AptError(f"{REPORT_NAME} names {name}, which the model does not have") from None
        weight = adapter.get_weight(module)
        zeros = int((weight == 0).sum())
        wanted = math.floor(claimed * weight.numel() + 1e-6)
        if zeros < wanted:
            raise AptError(f"{name}: {zeros} of {weight.numel()} weights are zero, fewer than "
                           f"the {wanted} ({claimed:.4f}) its {REPORT_NAME} records; the "
                           "checkpoint is not the pruned one")
        if claim.pattern.structured and not _pattern_holds(weight, claim.pattern):
            raise AptError(f"{name}: not {claim.pattern} sparse (some group of "
                           f"{claim.pattern.m} inputs has fewer than {claim.pattern.n} zeros)")
        out[name] = {"module": module, "shape": tuple(module.weight.shape), "zeros": zeros}
    return out


def _check_cast(model: nn.Module, dtype: torch.dtype) -> None:
    """Refuse a cast that would turn finite weights into infinities (float16's narrow range)."""
    limit = torch.finfo(dtype).max
    for name, param in model.named_parameters():
        if param.is_floating_point() and param.numel():
            peak = float(param.detach().abs().max())
            if math.isfinite(peak) and peak > limit:
                raise AptError(f"--dtype {str(dtype).removeprefix('torch.')}: {name} holds "
                               f"{peak:.4g}, beyond its range ({limit:.4g}); export in "
                               "bfloat16 or float32")


def _targets(adapter, names: list[str], model: nn.Module) -> list[str]:
    """compressed-tensors targets matching exactly ``names``: one pattern for every block when
    they are the adapter's prunable layers of all blocks, otherwise the names one by one."""
    from compressed_tensors.utils import match_named_modules

    layers = "|".join(re.escape(n) for n in adapter.prunable_names())
    compact = [f"re:^{re.escape(adapter.blocks_path)}\\.\\d+\\.({layers})$"]
    if {n for n, _ in match_named_modules(model, compact)} == set(names):
        return compact
    return [f"re:^{re.escape(n)}$" for n in names]


def _global_sparsity(model: nn.Module) -> float:
    params = {p.data_ptr(): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in params)
    return sum(int((p == 0).sum()) for p in params) / total if total else 0.0


def export_checkpoint(src: str | Path, out: str | Path, settings: ExportSettings,
                      force: bool = False) -> dict[str, Any]:
    """Write ``out``: ``src`` (an ``apt prune`` folder) in a sparse format; returns the report.

    ``out`` appears only once complete; ``out`` may be ``src`` with ``force`` (the dense
    checkpoint is then replaced by its export, in one rename). The report (also ``out/export_report.json``) has the
    format, the dtype and the bytes of the weights: dense, as the formats' arithmetic gives them
    and as written.
    """
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.config import BitmaskConfig, Sparse24BitMaskConfig

    from apt.models import adapter_for, load_model

    src, out = Path(src), Path(out)
    claim = read_claim(src)
    fmt = requested_format(claim.pattern, settings.format)
    if out.exists() and not force:
        raise AptError(f"--out {out} exists; remove it or pass --force to replace it")
    dtype = getattr(torch, settings.dtype or claim.dtype)

    model, tokenizer = load_model(str(src), dtype=getattr(torch, claim.dtype),
                                  require_adapter=True)
    adapter = adapter_for(model)
    if dtype != model.dtype:
        if torch.finfo(dtype).max < torch.finfo(model.dtype).max:
            _check_cast(model, dtype)
        model.to(dtype)
    layers = verify_sparsity(model, adapter, claim)
    if fmt == SPARSE_24:
        bad = [n for n, info in layers.items() if not isinstance(info["module"], nn.Linear)
               or not fits_24(info["module"].weight)]
        if bad:
            if settings.format == SPARSE_24:
                raise AptError(f"--format {SPARSE_24}: {bad[0]} does not store its weights as "
                               "out x in rows with at most 2 non-zeros in every 4 (GPT-2's "
                               f"Conv1D stores them in x out); use --format {BITMASK}")
            fmt = BITMASK

    names = list(claim.modules)
    config_cls = Sparse24BitMaskConfig if fmt == SPARSE_24 else BitmaskConfig
    sconfig = config_cls(targets=_targets(adapter, names, model),
                         global_sparsity=_global_sparsity(model),
                         sparsity_structure=str(claim.pattern))
    compressor = ModelCompressor(sparsity_config=sconfig)
    state = compressor.compress(model, show_progress=False)
    done = {k.removesuffix(".compressed") for k in state if k.endswith(".compressed")}
    if done != set(names):
        raise AptError(f"compressed-tensors compressed {len(done)} layers, not the "
                       f"{len(names)} pruned ones (e.g. {sorted(set(names) ^ done)[:3]})")

    itemsize = dtype.itemsize
    per_layer = {n: {"shape": list(info["shape"]), "zeros": info["zeros"],
                     "dense_bytes": stored_bytes(None, info["shape"], 0, itemsize),
                     "format_bytes": stored_bytes(fmt, info["shape"],
                                                  math.prod(info["shape"]) - info["zeros"],
                                                  itemsize)}
                 for n, info in layers.items()}
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp, state_dict=state)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        compressor.update_config(str(tmp))
        shutil.copyfile(src / REPORT_NAME, tmp / REPORT_NAME)
        report = _report(src, tmp, fmt, dtype, claim, per_layer)
        write_json_atomic(tmp / EXPORT_REPORT, report)
    return report


def _safetensors_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def tensor_bytes(folder: Path) -> dict[str, int]:
    """Bytes of each tensor in the folder's safetensors files, from their headers."""
    from safetensors import safe_open

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(f, "pt") as fh:
            for key in fh.keys():
                sl = fh.get_slice(key)
                out[key] = math.prod(sl.get_shape()) * _ITEMSIZE[sl.get_dtype()]
    return out


_FORMAT_TENSORS = ("compressed", "bitmask", "row_offsets", "shape")
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def _report(src: Path, out: Path, fmt: str, dtype: torch.dtype, claim: PruneClaim,
            per_layer: dict[str, dict[str, Any]]) -> dict[str, Any]:
    written = tensor_bytes(out)
    pruned_written = 0
    for key, size in written.items():
        layer, _, part = key.rpartition(".")
        if layer in per_layer and part in _FORMAT_TENSORS:
            per_layer[layer]["written_bytes"] = per_layer[layer].get("written_bytes", 0) + size
            pruned_written += size
    return {
        "format": fmt,
        "dtype": str(dtype).removeprefix("torch."),
        "pattern": str(claim.pattern),
        "sparsity": claim.sparsity,
        "source": str(src),
        "layers": len(per_layer),
        "bytes": {
            "pruned_layers_dense": sum(v["dense_bytes"] for v in per_layer.values()),
            "pruned_layers_format": sum(v["format_bytes"] for v in per_layer.values()),
            "pruned_layers_written": pruned_written,
            "other_tensors_written": sum(written.values()) - pruned_written,
            "safetensors_files": _safetensors_bytes(out),
            "source_safetensors_files": _safetensors_bytes(src),
        },
        "per_layer": per_layer,
    }
