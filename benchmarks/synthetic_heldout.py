"""Layer error on new tokens for synthetic problems of any shape, with as many tokens as asked.

``benchmarks/solvers.py`` scores its synthetic problems on their own 2 n tokens (in-sample),
where a method's damping costs error that it may win back on new tokens. Here the inputs come
from the same distribution as there (per-feature log-normal scales and a shared rank-64
component, the scales and the mixing fixed per problem), but the calibration Hessian is built
from ``ratio x n`` tokens and every method is scored on the Hessian of as many *other* tokens
drawn from the same distribution, as well as in-sample:

    error = tr(dW H dW^T) / tr(W H W^T)   with H of the calibration or of the new tokens

    python benchmarks/synthetic_heldout.py [--shapes 4096x4096,4096x11008] [--ratios 2,8,24]
        [--variants 'sparsegpt={}' 'apt={}' 'apt_d05={"percdamp": 0.05}'] [--device cuda]
        [--out results/benchmarks/synthetic_heldout.json]

A variant is ``NAME=JSON`` (options for ``prune_matrix``; the method is the name up to the first
``_``). The Hessians are accumulated in chunks of tokens on the device (float32).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from apt.io import write_json_atomic
from apt.provenance import environment
from apt.pruning import prune_matrix
from apt.pruning.metrics import layer_error_parts
from solvers import parse_pattern_arg   # benchmarks/ is on sys.path when run as a script


def make_source(n: int, device: torch.device, seed: int = 0):
    """The fixed part of a problem's input distribution: scales (n, 1) and mixing (n, 64)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    scale = torch.exp(torch.randn(n, 1, generator=g)).to(device)
    mix = torch.randn(n, 64, generator=g).to(device)
    return scale, mix


def hessian(scale: torch.Tensor, mix: torch.Tensor, tokens: int, seed: int,
            chunk: int = 16384) -> torch.Tensor:
    """``(2 / T) sum x x^T`` over ``tokens`` fresh tokens ``x = scale * z + 0.3 mix v``."""
    n, device = scale.shape[0], scale.device
    g = torch.Generator(device=device).manual_seed(seed)
    h = torch.zeros(n, n, device=device)
    done = 0
    while done < tokens:
        t = min(chunk, tokens - done)
        x = scale * torch.randn(n, t, generator=g, device=device)
        x += 0.3 * (mix @ torch.randn(64, t, generator=g, device=device))
        h.addmm_(x, x.T)
        done += t
    return h.mul_(2.0 / tokens)


def parse_variants(items: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    out = {}
    for item in items:
        name, _, raw = item.partition("=")
        out[name] = (name.split("_")[0], json.loads(raw or "{}"))
    return out


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
    variants = parse_variants(args.variants)
    rows = []
    t_start = time.perf_counter()
    for shape in args.shapes.split(","):
        m, n = (int(v) for v in shape.lower().split("x"))
        scale, mix = make_source(n, device)
        w = (torch.randn(m, n, generator=torch.Generator().manual_seed(1)) / math.sqrt(n)).to(device)
        for ratio in (float(r) for r in args.ratios.split(",")):
            tokens = int(ratio * n)
            h_cal = hessian(scale, mix, tokens, seed=2)
            h_new = hessian(scale, mix, tokens, seed=3)
            for spec in args.patterns.split(","):
                _, pattern, sparsity = parse_pattern_arg(spec)
                for name, (method, opts) in variants.items():
                    t0 = time.perf_counter()
                    res = prune_matrix(w, h_cal, method, sparsity=sparsity, pattern=pattern,
                                       **opts)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
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
    write_json_atomic(args.out, {
        "what": "relative layer error in-sample and on new tokens of the same synthetic "
                "distribution, per variant; ratios to sparsegpt",
        "command": " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None
                                                              else sys.argv[1:])),
        "settings": {"shapes": args.shapes, "ratios": args.ratios, "patterns": args.patterns,
                     "variants": {k: {"method": v[0], "options": v[1]}
                                  for k, v in variants.items()},
                     "device": str(device)},
        "rows": rows, "ratios_to_sparsegpt": ratios, "environment": environment(),
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
