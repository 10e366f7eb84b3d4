"""Does a refactor change what the solvers compute? Save every method's output on fixed
problems, then compare another version of the code against the saved file (``torch.equal``).

    .venv/bin/python -m benchmarks.solver_outputs --save /tmp/before.pt      # old code
    .venv/bin/python -m benchmarks.solver_outputs --compare /tmp/before.pt \
        --out results/benchmarks/solver_outputs_equal.json                    # new code

Problems: three shapes with correlated inputs and a few outlier channels, one with dead inputs;
every method at 50 % / 70 % unstructured, 2:4 and 4:8, and APT's searches and refits.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from apt.pruning import METHODS, prune_matrix
from benchmarks.common import command, write_report

PATTERNS = [(0.5, "unstructured"), (0.7, "unstructured"), (None, "2:4"), (None, "4:8")]
APT_VARIANTS = {"default": {}, "tokens": {"tokens": 256}, "refit_cg": {"refit": "cg"},
                "refit_exact": {"refit": "exact"}, "blockwise": {"search": "blockwise"},
                "gemm_f32": {"admm_gemm_dtype": "float32"}}


def problem(rows: int, cols: int, seed: int, dead: int = 0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.exp(torch.randn(cols, generator=g))
    scale[torch.randperm(cols, generator=g)[:3]] *= 20.0             # outlier channels
    x = torch.randn(4 * cols, cols, generator=g) @ (torch.eye(cols) + 0.3 * torch.randn(
        cols, cols, generator=g) / cols ** 0.5) * scale
    if dead:
        x[:, :dead] = 0.0
    w = torch.randn(rows, cols, generator=g) / cols ** 0.5
    return w, 2 * x.t() @ x / x.shape[0]


def cases():
    probs = {"64x128": problem(64, 128, 0), "96x64": problem(96, 64, 1),
             "32x256_dead": problem(32, 256, 2, dead=8)}
    for pname, (w, h) in probs.items():
        for sparsity, pattern in PATTERNS:
            for method in METHODS:
                variants = APT_VARIANTS if method == "apt" else {"default": {}}
                for vname, opts in variants.items():
                    key = f"{pname}/{method}/{pattern}/{sparsity}/{vname}"
                    yield key, w, h, method, sparsity, pattern, opts


def run_all() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out = {}
    for key, w, h, method, sparsity, pattern, opts in cases():
        res = prune_matrix(w, h, method=method, sparsity=sparsity, pattern=pattern, **opts)
        out[key] = (res.weight, res.mask)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", help="write every output to this file")
    ap.add_argument("--compare", help="compare against a file written by --save")
    ap.add_argument("--out", help="with --compare: write the verdict as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    outputs = run_all()
    if args.save:
        torch.save(outputs, args.save)
        print(f"saved {len(outputs)} outputs to {args.save}")
    if args.compare:
        saved = torch.load(args.compare)
        differ = sorted(k for k in saved if k not in outputs
                        or not (torch.equal(saved[k][0], outputs[k][0])
                                and torch.equal(saved[k][1], outputs[k][1])))
        verdict = {"command": command("benchmarks.solver_outputs", argv), "cases": len(saved),
                   "equal": len(saved) - len(differ), "differ": differ, "threads": 1}
        print(json.dumps(verdict, indent=1))
        if args.out:
            write_report(args.out, verdict)
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
