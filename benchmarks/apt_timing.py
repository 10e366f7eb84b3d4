"""Exploratory: wall time per matrix of APT variants against our SparseGPT (min of k runs).

    .venv/bin/python benchmarks/apt_timing.py [--shapes 576x576,1536x576,576x1536]
        [--patterns 50%,2:4] [--repeats 3] [--threads 2] [--variants NAME=JSON ...]
        [--out results/benchmarks/apt_timing.json]

Runs are interleaved (sparsegpt, variant 1, variant 2, ... repeated) and the minimum is kept,
which is the figure least disturbed by other processes on a shared machine. W random, H from
random correlated inputs (the layer errors of real layers are in apt_variants.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from apt.io import write_json_atomic
from apt.provenance import environment
from apt.pruning import prune_matrix

ROOT = Path(__file__).resolve().parents[1]


def problem(m, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = (torch.randn(n, n, generator=g) / n ** 0.5 + torch.eye(n)) @ torch.randn(n, 2 * n, generator=g)
    return torch.randn(m, n, generator=g), (1.0 / n) * X @ X.T


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="576x576,1536x576,576x1536")
    ap.add_argument("--patterns", default="50%,2:4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="*", default=["apt_default={}"])
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/apt_timing.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = {}
    for item in args.variants:
        name, _, js = item.partition("=")
        variants[name] = json.loads(js)
    out = {}
    for shape in args.shapes.split(","):
        m, n = map(int, shape.split("x"))
        W, H = problem(m, n)
        for pspec in args.patterns.split(","):
            pattern, sp = (pspec, None) if ":" in pspec else ("unstructured", float(pspec[:-1]) / 100)
            times = {k: [] for k in ["sparsegpt", *variants]}
            for _ in range(args.repeats):
                for name in times:
                    meth, opts = ("sparsegpt", {}) if name == "sparsegpt" else ("apt", variants[name])
                    t = time.perf_counter()
                    prune_matrix(W, H, meth, sp, pattern, **opts)
                    times[name].append(time.perf_counter() - t)
            best = {k: min(v) for k, v in times.items()}
            row = {k: {"min_s": best[k], "all_s": times[k],
                       "ratio_vs_sparsegpt": best[k] / best["sparsegpt"]} for k in times}
            out[f"{shape} {pspec}"] = row
            print(shape, pspec, " ".join(f"{k}={v['min_s']:.3f}s(x{v['ratio_vs_sparsegpt']:.2f})"
                                         for k, v in row.items()), flush=True)
    write_json_atomic(Path(args.out), {
        "command": " ".join([".venv/bin/python", "benchmarks/apt_timing.py", *sys.argv[1:]]),
        "variants": variants, "threads": args.threads, "repeats": args.repeats,
        "results": out, "environment": environment()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
