"""Exploratory: APT variants' solver time against our SparseGPT's on real layers, summed.

    .venv/bin/python benchmarks/apt_layer_timing.py [--hessians FILE] [--layers REGEX]
        [--patterns 50%,2:4] [--repeats 3] [--threads 1] [--variants NAME=JSON ...]
        [--out results/benchmarks/apt_layer_timing.json]

Per layer of the Hessian file (``collect_hessians.py``) and pattern, SparseGPT and each variant
(options of apt.prune as JSON) run interleaved ``--repeats`` times; the minimum per layer is
kept (the figure least disturbed by other processes on a shared machine) and summed over the
layers. Unlike ``apt_timing.py`` (random matrices), the steps of a search that stops when its
mask is stable depend on the layer, so real Hessians are used; the layer errors are in
``apt_variants.py``.
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

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hessians", default=str(ROOT / "resources/bench/hessians_smollm2.pt"))
    ap.add_argument("--layers", default=r"layers\.")
    ap.add_argument("--patterns", default="50%,2:4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", nargs="*", default=["apt_default={}"])
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/apt_layer_timing.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = {}
    for item in args.variants:
        name, _, js = item.partition("=")
        variants[name] = json.loads(js)
    data = torch.load(args.hessians)
    tokens = (data.get("__meta__") or {}).get("ntokens")
    layers = [k for k in data if k != "__meta__" and re.search(args.layers, k)]
    results = {}
    for pspec in args.patterns.split(","):
        pattern, sp = (pspec, None) if ":" in pspec else ("unstructured", float(pspec[:-1]) / 100)
        per_layer = {}
        for name in layers:
            W, H = data[name]
            times = {k: [] for k in ["sparsegpt", *variants]}
            steps = {}
            for _ in range(args.repeats):
                for meth in times:
                    method, opts = ("sparsegpt", {}) if meth == "sparsegpt" else ("apt", variants[meth])
                    t = time.perf_counter()
                    r = prune_matrix(W, H, method, sp, pattern, **{"tokens": tokens, **opts})
                    times[meth].append(time.perf_counter() - t)
                    steps[meth] = r.info.get("admm_steps_run")
            per_layer[name] = {k: {"min_s": min(v), "all_s": v, "admm_steps_run": steps[k]}
                               for k, v in times.items()}
        total = {k: sum(per_layer[n][k]["min_s"] for n in layers) for k in ["sparsegpt", *variants]}
        summary = {k: {"time_s": t, "ratio_vs_sparsegpt": t / total["sparsegpt"]}
                   for k, t in total.items()}
        results[pspec] = {"summary": summary, "layers": per_layer}
        print(pspec, " ".join(f"{k}={v['time_s']:.2f}s(x{v['ratio_vs_sparsegpt']:.2f})"
                              for k, v in summary.items()), flush=True)
    write_json_atomic(Path(args.out), {
        "command": " ".join([".venv/bin/python", "benchmarks/apt_layer_timing.py", *sys.argv[1:]]),
        "variants": variants, "threads": args.threads, "repeats": args.repeats,
        "hessians": args.hessians, "meta": data.get("__meta__"), "results": results,
        "environment": environment()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
