"""Wall time per matrix of APT variants against our SparseGPT (min of k runs).

    .venv/bin/python -m benchmarks.apt_timing [--shapes 576x576,1536x576,576x1536]
        [--patterns 50%,2:4] [--repeats 3] [--threads 2] [--variants NAME={...} ...]
        [--out results/benchmarks/apt_timing.json]

A variant is ``NAME={...}``: options of APT's ``prune`` (JSON or YAML flow style). Runs are
interleaved (sparsegpt, variant 1, variant 2, ... repeated) and the minimum is kept, which is
the figure least disturbed by other processes on a shared machine. W random, H from mildly
correlated random inputs (:func:`benchmarks.common.conditioned_problem`; the layer errors of
real layers are measured by :mod:`benchmarks.apt_variants`).
"""

from __future__ import annotations

import argparse
import time

import torch

from apt.pruning import prune_matrix
from benchmarks.common import (command, conditioned_problem, shape_list, targets, variants,
                               write_report)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="576x576,1536x576,576x1536")
    ap.add_argument("--patterns", default="50%,2:4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="*", default=["apt_default={}"])
    ap.add_argument("--out", default="results/benchmarks/apt_timing.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = variants(args.variants)
    patterns = targets(args.patterns)
    out = {}
    for m, n in shape_list(args.shapes):
        W, H = conditioned_problem(m, n)
        for target in patterns:
            times = {k: [] for k in ["sparsegpt", *options]}
            for _ in range(args.repeats):
                for name in times:
                    meth, opts = ("sparsegpt", {}) if name == "sparsegpt" else ("apt", options[name])
                    t = time.perf_counter()
                    prune_matrix(W, H, meth, target.sparsity, target.pattern_arg, **opts)
                    times[name].append(time.perf_counter() - t)
            best = {k: min(v) for k, v in times.items()}
            row = {k: {"min_s": best[k], "all_s": times[k],
                       "ratio_vs_sparsegpt": best[k] / best["sparsegpt"]} for k in times}
            out[f"{m}x{n} {target.label}"] = row
            print(f"{m}x{n}", target.label, " ".join(
                f"{k}={v['min_s']:.3f}s(x{v['ratio_vs_sparsegpt']:.2f})" for k, v in row.items()),
                flush=True)
    write_report(args.out, {
        "command": command("benchmarks.apt_timing", argv),
        "variants": options, "threads": args.threads, "repeats": args.repeats, "results": out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
