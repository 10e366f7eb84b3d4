"""Do the exports load in transformers itself? A check with transformers releases that read them.

The transformers of this project (and every release since the compressed-tensors minimum went to
0.15, which has no sparse compressors) does not read the compressed-tensors sparsity formats.
Older releases do, through ``CompressedTensorsHfQuantizer``, in two ways: 4.53 decompresses the
files into the model; later releases (5.9 here) first lay out the model, still on the meta
device, in the compressed form, which compressed-tensors can do for the 2:4 format only (the
bitmask format's size depends on the values). This script prunes and exports a tiny model of
every family (50 % unstructured and 2:4) with the project's environment, adds any
``--pair DENSE EXPORT`` folders, and then, for each ``--stack`` (a folder put first on
``PYTHONPATH`` of a separate interpreter), loads each export with
``AutoModelForCausalLM.from_pretrained`` and compares its weights (bit for bit) and logits with
the dense pruned checkpoint loaded the same way. The stacks are made with

    pip install --no-deps --target S453 transformers==4.53.3 tokenizers==0.21.4 \
        huggingface-hub==0.36.0
    pip install --no-deps --target S590 transformers==5.9.0 tokenizers==0.22.2 \
        huggingface-hub==1.33.0 httpx httpcore h11

    PYTHONPATH=src .venv/bin/python benchmarks/export_transformers_check.py --stack S453 \
        --stack S590 [--pair DENSE EXPORT ...] \
        [--out results/benchmarks/export_transformers_check.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_and_compare(dense: str, export: str) -> dict:
    """Run inside the older stack: from_pretrained both folders, compare weights and logits."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    config = json.loads((Path(dense) / "config.json").read_text())
    dtype = getattr(torch, config.get("dtype") or config.get("torch_dtype") or "float32")
    # the quantizer of transformers 4 picks float16 unless told; 5 renamed the argument
    kw = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": dtype}
    a = AutoModelForCausalLM.from_pretrained(dense, **kw)
    b = AutoModelForCausalLM.from_pretrained(export, **kw)
    sa, sb = a.state_dict(), b.state_dict()

    def bits(t):
        return t.contiguous().view(torch.uint8) if t.is_floating_point() else t

    same = sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and torch.equal(bits(sa[k]), bits(sb[k])) for k in sa)
    ids = torch.randint(0, a.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        la, lb = a(input_ids=ids).logits, b(input_ids=ids).logits
    quantizer = getattr(b, "hf_quantizer", None)
    return {"transformers": transformers.__version__,
            "quantizer": type(quantizer).__name__ if quantizer is not None else None,
            "bit_identical": bool(same), "logits_equal": bool(torch.equal(la, lb))}


def tiny_pairs(work: Path) -> list[tuple[str, str, str]]:
    from tests.tiny_models import FAMILIES, TINY_TEXT, make_tiny_model   # run from the repo root

    from apt.cli import main as apt

    text = work / "text.txt"
    text.write_text(TINY_TEXT * 20)
    pairs = []
    for family in FAMILIES:
        model = make_tiny_model(family, work / family)
        for pattern in ("unstructured", "2:4"):
            tag = f"{family}-{pattern.replace(':', '-')}"
            dense, export = work / f"{tag}-pruned", work / f"{tag}-export"
            args = ["prune", "--model", str(model), "--method", "magnitude", "--pattern", pattern,
                    "--calib", str(text), "--nsamples", "2", "--seqlen", "16", "--out",
                    str(dense), "--no-progress"]
            if pattern == "unstructured":
                args += ["--sparsity", "0.5"]
            assert apt(args) == 0
            assert apt(["export", "--model", str(dense), "--out", str(export)]) == 0
            pairs.append((tag, str(dense), str(export)))
    return pairs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", action="append", default=[],
                    help="folder with an older transformers (see the docstring); repeatable")
    ap.add_argument("--pair", nargs=2, action="append", default=[], metavar=("DENSE", "EXPORT"))
    ap.add_argument("--compare", nargs=2, help=argparse.SUPPRESS)  # the child's job
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/export_transformers_check.json"))
    args = ap.parse_args(argv)
    if args.compare:
        print(json.dumps(load_and_compare(*args.compare)))
        return 0
    if not args.stack:
        ap.error("--stack is required")

    from apt.io import write_json_atomic
    from apt.provenance import environment

    with tempfile.TemporaryDirectory(prefix="export_tf_") as tmp:
        pairs = tiny_pairs(Path(tmp)) + [(Path(e).name, d, e) for d, e in args.pair]
        rows = []
        for stack in args.stack:
            env = {**os.environ, "PYTHONPATH": stack}
            for tag, dense, export in pairs:
                fmt = json.loads((Path(export) / "config.json").read_text())[
                    "quantization_config"]["sparsity_config"]["format"]
                proc = subprocess.run([sys.executable, __file__, "--compare", dense, export],
                                      env=env, capture_output=True, text=True)
                if proc.returncode:
                    row = {"error": proc.stderr.strip().splitlines()[-1]}
                else:
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append({"stack": Path(stack).name, "checkpoint": tag, "format": fmt, **row})
                print(rows[-1], flush=True)
    write_json_atomic(args.out, {
        "benchmark": "export_transformers_check",
        "what": "apt export folders loaded by transformers' own from_pretrained (an older "
                "transformers that still reads the compressed-tensors sparsity formats): weights "
                "bit for bit and logits against the dense pruned checkpoint",
        "rows": rows, "environment": environment()})
    print(f"-> {args.out}")
    return 0 if all(r.get("bit_identical") and r.get("logits_equal") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
