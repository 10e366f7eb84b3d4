"""Exploratory: APT variants against our SparseGPT on real SmolLM2 layer Hessians.

    .venv/bin/python benchmarks/apt_variants.py [--layers REGEX] [--patterns 50%,2:4]
        [--variants NAME=JSON ...] [--threads 2] [--out results/benchmarks/apt_variants.json]

For every layer and pattern: relative layer error tr(dW H dW^T)/tr(W H W^T) (undamped H) and
wall time per matrix, for sparsegpt and each APT variant (options of apt.prune as JSON).
Totals are sums of numerators over sums of denominators; "won" counts layers where the
variant's error is below SparseGPT's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

from apt.io import write_json_atomic
from apt.provenance import environment
from apt.pruning import prune_matrix
from apt.pruning.metrics import layer_error_parts

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VARIANTS = {
    "apt_score_norefit": {"mask_rule": "score", "refit": False},
    "apt_score_cg": {"mask_rule": "score", "refit": "cg"},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hessians", default=str(ROOT / "resources/bench/hessians_smollm2.pt"))
    ap.add_argument("--layers", default=r"layers\.(7|23)\.")
    ap.add_argument("--patterns", default="50%,60%,70%,2:4,4:8")
    ap.add_argument("--variants", nargs="*", default=None, help="NAME=JSON options of apt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/apt_variants.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = dict(DEFAULT_VARIANTS)
    if args.variants:
        variants = {}
        for item in args.variants:
            name, _, js = item.partition("=")
            variants[name] = json.loads(js)
    data = torch.load(args.hessians)
    layers = [k for k in data if k != "__meta__" and re.search(args.layers, k)]
    results = {}
    for pspec in args.patterns.split(","):
        if ":" in pspec:
            pattern, sparsity = pspec, None
        else:
            pattern, sparsity = "unstructured", float(pspec.rstrip("%")) / 100
        rows = {}
        for name in layers:
            W, H = data[name]
            row = {}
            r = None
            for meth, opts in [("sparsegpt", {})] + [(v, o) for v, o in variants.items()]:
                method = "sparsegpt" if meth == "sparsegpt" else "apt"
                t = time.perf_counter()
                r = prune_matrix(W, H, method=method, sparsity=sparsity, pattern=pattern, **opts)
                dt = time.perf_counter() - t
                num, den = layer_error_parts(W, r.weight, H.double())
                row[meth] = {"num": num, "den": den, "rel": num / den, "time_s": dt,
                             "pruned": int(r.mask.sum())}
            rows[name] = row
            print(pspec, name, " ".join(f"{k}={v['rel']:.4f}/{v['time_s']:.2f}s"
                                        for k, v in row.items()), flush=True)
        summ = {}
        for meth in ["sparsegpt", *variants]:
            num = sum(rows[l][meth]["num"] for l in layers)
            den = sum(rows[l][meth]["den"] for l in layers)
            won = sum(rows[l][meth]["num"] < rows[l]["sparsegpt"]["num"] for l in layers)
            t = sum(rows[l][meth]["time_s"] for l in layers)
            summ[meth] = {"total_rel": num / den, "won": won, "layers": len(layers), "time_s": t}
        ref = summ["sparsegpt"]
        for meth, s in summ.items():
            s["ratio_vs_sparsegpt"] = s["total_rel"] / ref["total_rel"]
            s["time_ratio_vs_sparsegpt"] = s["time_s"] / ref["time_s"]
            print(f"  {pspec} {meth:24s} total {s['total_rel']:.5f} ratio {s['ratio_vs_sparsegpt']:.3f}"
                  f" won {s['won']}/{s['layers']} time {s['time_s']:.2f}s x{s['time_ratio_vs_sparsegpt']:.2f}",
                  flush=True)
        results[pspec] = {"summary": summ, "layers": rows}
    out = {"command": " ".join([".venv/bin/python", "benchmarks/apt_variants.py", *sys.argv[1:]]),
           "variants": variants, "threads": args.threads, "hessians": args.hessians,
           "meta": data.get("__meta__"), "results": results, "environment": environment()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(args.out), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
