"""Layer error on new tokens for synthetic problems of any shape, with as many tokens as asked.

:mod:`benchmarks.solvers` scores its synthetic problems on their own 2 n tokens (in-sample),
where a method's damping costs error that it may win back on new tokens. Here the inputs come
from the same distribution as there (:class:`benchmarks.common.InputSource`: per-feature
log-normal scales and a shared rank-64 component, fixed per problem), but the calibration Hessian is built
from ``ratio x n`` tokens and every method is scored on the Hessian of as many *other* tokens
drawn from the same distribution, as well as in-sample:

    error = tr(dW H dW^T) / tr(W H W^T)   with H of the calibration or of the new tokens

    .venv/bin/python -m benchmarks.synthetic_heldout [--shapes 4096x4096,4096x11008] [--ratios 2,8,24]
        [--variants 'sparsegpt={}' 'apt={}' 'apt_d05={"percdamp": 0.05}'] [--device cuda]
        [--out results/benchmarks/synthetic_heldout.json]

A variant is ``NAME={...}`` (options for ``prune_matrix``, JSON or YAML; the method is the name
up to the first ``_``). The Hessians are accumulated in chunks of tokens on the device (float32).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import torch

from apt.pruning import prune_matrix
from apt.pruning.metrics import layer_error_parts
from benchmarks.common import InputSource, command, shape_list, sync, targets, variants, write_report


def parse_variants(items: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """``NAME={...}`` -> ``{NAME: (method, options)}``: the method is NAME up to the first ``_``."""
    return {name: (name.split("_")[0], opts) for name, opts in variants(items).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="4096x4096,4096x11008")
    ap.add_argument("--ratios", default="2,8,24", help="calibration tokens per input (T / n)")
    ap.add_argument("--patterns", default="50%,2:4")
    ap.add_argument("--variants", nargs="+",
                    default=["sparsegpt={}", "apt={}", 'apt_d05={"percdamp": 0.05}'])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="results/benchmarks/synthetic_heldout.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variant_map = parse_variants(args.variants)
    rows = []
    t_start = time.perf_counter()
    patterns = targets(args.patterns)
    for m, n in shape_list(args.shapes):
        source = InputSource(n, device)
        w = (torch.randn(m, n, generator=torch.Generator().manual_seed(1)) / math.sqrt(n)).to(device)
        for ratio in (float(r) for r in args.ratios.split(",")):
            tokens = int(ratio * n)
            h_cal = source.hessian(tokens, seed=2)
            h_new = source.hessian(tokens, seed=3)
            for target in patterns:
                spec = target.label
                for name, (method, opts) in variant_map.items():
                    t0 = time.perf_counter()
                    res = prune_matrix(w, h_cal, method, sparsity=target.sparsity,
                                       pattern=target.pattern_arg, **opts)
                    sync(device)
                    seconds = time.perf_counter() - t0
                    errors = {}
                    for label, h in (("in_sample", h_cal), ("new_tokens", h_new)):
                        num, den = layer_error_parts(w, res.weight, h)
                        errors[label] = num / den
                    rows.append({"shape": [m, n], "tokens_per_input": ratio, "tokens": tokens,
                                 "pattern": spec, "variant": name, "method": method,
                                 "options": opts, "time_s": seconds, **errors})
                    print(f"{m}x{n} T={ratio:g}n {spec:>4} {name:>10}: in-sample "
                          f"{errors['in_sample']:.5f} new tokens {errors['new_tokens']:.5f} "
                          f"({seconds:.2f} s)", file=sys.stderr, flush=True)
            del h_cal, h_new
    ratios = _ratios(rows)
    for r in ratios:
        print(f"{r['shape'][0]}x{r['shape'][1]} T={r['tokens_per_input']:g}n {r['pattern']:>4} "
              f"{r['variant']:>10} / sparsegpt: in-sample {r['in_sample']:.3f}, new tokens "
              f"{r['new_tokens']:.3f}", file=sys.stderr)
    write_report(args.out, {
        "what": "relative layer error in-sample and on new tokens of the same synthetic "
                "distribution, per variant; ratios to sparsegpt",
        "command": command("benchmarks.synthetic_heldout", argv),
        "settings": {"shapes": args.shapes, "ratios": args.ratios, "patterns": args.patterns,
                     "variants": {k: {"method": v[0], "options": v[1]}
                                  for k, v in variant_map.items()},
                     "device": str(device)},
        "rows": rows, "ratios_to_sparsegpt": ratios,
        "wall_s": time.perf_counter() - t_start})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = {(tuple(r["shape"]), r["tokens_per_input"], r["pattern"]): r for r in rows
            if r["variant"] == "sparsegpt"}
    out = []
    for r in rows:
        b = base.get((tuple(r["shape"]), r["tokens_per_input"], r["pattern"]))
        if b is None or r is b:
            continue
        out.append({"shape": r["shape"], "tokens_per_input": r["tokens_per_input"],
                    "pattern": r["pattern"], "variant": r["variant"],
                    "in_sample": r["in_sample"] / b["in_sample"],
                    "new_tokens": r["new_tokens"] / b["new_tokens"]})
    return out


if __name__ == "__main__":
    raise SystemExit(main())
