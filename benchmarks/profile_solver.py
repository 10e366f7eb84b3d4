"""Where one solver's time goes: torch.profiler's operator table for one matrix.

Prunes the synthetic problem of :mod:`benchmarks.solvers` (random W, correlated inputs) once to
warm up, then once under the profiler, and prints (and writes, with ``--out``) the operators
sorted by their total time on the device (self CPU time on a CPU).

    .venv/bin/python -m benchmarks.profile_solver [--method apt] [--shape 4096x4096] [--pattern 50%]
        [--device cuda] [--threads 0] [--rows 30] [--opt KEY=VALUE ...] [--out FILE (appended to)]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from apt.pruning import prune_matrix
from benchmarks.common import key_values, shape_list, synthetic_problem, targets, timed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="apt")
    ap.add_argument("--shape", default="4096x4096")
    ap.add_argument("--pattern", default="50%")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    (m, n), = shape_list(args.shape, "--shape")
    target = targets(args.pattern, "--pattern")[0]
    opts = key_values(args.opt)
    w, h = synthetic_problem(m, n, device)

    def once() -> float:
        return timed(lambda: prune_matrix(w, h, args.method, sparsity=target.sparsity,
                                          pattern=target.pattern_arg, **opts), device)[1]

    warm = once()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    with profile(activities=activities) as prof:
        profiled = once()
    key = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=args.rows)
    head = (f"{args.method} {args.shape} {target.label} on {device} {opts or ''}: "
            f"{warm:.3f} s warm-up, {profiled:.3f} s profiled\n")
    print(head + table)
    if args.out:
        with open(args.out, "a") as fh:     # appends: several profiles to one file
            fh.write(head + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
