"""On-disk size of pruned checkpoints: dense, and exported in compressed-tensors' sparse formats.

For each pruned folder (e.g. 50 % unstructured and 2:4) and each dtype (float32, bfloat16):
the dense checkpoint (``apt prune``'s own files for its dtype; for another dtype the same weights
cast and saved with ``save_pretrained``) and the ``apt export`` output. For each: the weight
files' size, the safetensors header, and the tensor bytes the formats' arithmetic predicts
(:func:`apt.engine.export.stored_bytes` for every pruned layer, the other tensors dense), and
the round trip: the export loaded back holds the dense weights bit for bit and gives the same
perplexity on a few windows.

    PYTHONPATH=src .venv/bin/python benchmarks/export_size.py --pruned W/wanda-50 W/wanda-24 \
        [--dtypes float32,bfloat16] [--work DIR] [--dataset wiki --seqlen 256 --windows 4] \
        [--out results/benchmarks/export_size.json]
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def header_bytes(folder: Path) -> int:
    """8-byte length prefix plus JSON header of every safetensors file of ``folder``."""
    total = 0
    for f in folder.glob("*.safetensors"):
        with f.open("rb") as fh:
            total += 8 + struct.unpack("<Q", fh.read(8))[0]
    return total


def file_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8) if t.is_floating_point() else t


def bit_identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(bits(a[k]), bits(b[k])) for k in a)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pruned", nargs="+", required=True, help="folders written by apt prune")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--work", default=None, help="where the exports go (default: a temp folder)")
    ap.add_argument("--dataset", default="wiki")
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/export_size.json"))
    args = ap.parse_args(argv)

    from apt.engine.export import ExportSettings, export_checkpoint, tensor_bytes
    from apt.eval.perplexity import dataset_tokens, perplexity
    from apt.io import write_json_atomic
    from apt.models import load_model
    from apt.provenance import environment

    tmp = tempfile.TemporaryDirectory(prefix="export_size_")
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for src in map(Path, args.pruned):
        report = json.loads((src / "prune_report.json").read_text())
        stored = json.loads((src / "config.json").read_text()).get("dtype", "float32")
        pruned = {r["name"] for r in report["modules"]}
        for dtype_name in args.dtypes.split(","):
            dtype = getattr(torch, dtype_name)
            dense_dir = src
            dense_model, tok = load_model(str(src), dtype=dtype)
            if dtype_name != stored:
                dense_dir = work / f"{src.name}-dense-{dtype_name}"
                dense_model.save_pretrained(dense_dir)
            out = work / f"{src.name}-{dtype_name}"
            exp = export_checkpoint(src, out, ExportSettings(dtype=dtype_name), force=True)

            dense_tensors = tensor_bytes(dense_dir)
            other = sum(v for k, v in dense_tensors.items()
                        if not (k.endswith(".weight") and k.removesuffix(".weight") in pruned))
            predicted = exp["bytes"]["pruned_layers_format"] + other
            measured = file_bytes(out) - header_bytes(out)

            model, _ = load_model(str(out), dtype=dtype)
            same = bit_identical(dense_model.state_dict(), model.state_dict())
            ids = dataset_tokens(tok, args.dataset, args.seqlen)
            p_dense = perplexity(dense_model, ids, args.seqlen, max_windows=args.windows,
                                 progress=False)
            p_exp = perplexity(model, ids, args.seqlen, max_windows=args.windows, progress=False)
            row = {
                "checkpoint": src.name,
                "pattern": report["settings"]["pattern"],
                "sparsity": report["settings"]["sparsity"],
                "dtype": dtype_name,
                "format": exp["format"],
                "dense_file_bytes": file_bytes(dense_dir),
                "export_file_bytes": file_bytes(out),
                "export_header_bytes": header_bytes(out),
                "export_tensor_bytes": measured,
                "predicted_tensor_bytes": predicted,
                "prediction_exact": measured == predicted,
                "pruned_layers_dense_bytes": exp["bytes"]["pruned_layers_dense"],
                "pruned_layers_format_bytes": exp["bytes"]["pruned_layers_format"],
                "other_tensor_bytes": other,
                "ratio_file": file_bytes(out) / file_bytes(dense_dir),
                "ratio_pruned_layers": (exp["bytes"]["pruned_layers_format"]
                                        / exp["bytes"]["pruned_layers_dense"]),
                "bit_identical": same,
                "ppl_dense": p_dense["ppl"],
                "ppl_export": p_exp["ppl"],
                "ppl_equal": p_dense["window_nll"] == p_exp["window_nll"],
                "ppl_windows": p_dense["windows"],
            }
            rows.append(row)
            print(f"{src.name:12s} {dtype_name:8s} {row['format']:18s} dense "
                  f"{row['dense_file_bytes'] / 1e6:8.2f} MB  export "
                  f"{row['export_file_bytes'] / 1e6:8.2f} MB ({row['ratio_file']:.3f}; pruned "
                  f"layers {row['ratio_pruned_layers']:.3f})  predicted exact: "
                  f"{row['prediction_exact']}  bits: {same}  ppl {p_dense['ppl']:.4f} / "
                  f"{p_exp['ppl']:.4f}", flush=True)
            del model, dense_model
    result = {
        "benchmark": "export_size",
        "what": "weight-file bytes of dense pruned checkpoints and of their apt export "
                "(compressed-tensors sparse formats) against the formats' arithmetic; round trip "
                "bit identity and perplexity",
        "settings": {"pruned": args.pruned, "dtypes": args.dtypes, "dataset": args.dataset,
                     "seqlen": args.seqlen, "windows": args.windows},
        "rows": rows,
        "environment": environment(),
    }
    write_json_atomic(args.out, result)
    print(f"-> {args.out}")
    return 0 if all(r["prediction_exact"] and r["bit_identical"] and r["ppl_equal"]
                    for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
