"""Solver benchmark: layer error and time of every pruning method on real SmolLM2 layers.

For each method of ``apt.pruning.METHODS`` and each pattern (default 50 %, 60 %, 70 %, 2:4, 4:8)
it prunes every captured layer (:mod:`benchmarks.collect_hessians` writes them) and reports

- the relative layer error ``||(W - W') X||^2 / ||W X||^2 = tr(dW H dW^T) / tr(W H W^T)``
  (undamped H, :func:`apt.pruning.metrics.layer_error_parts`), per layer and in total (sums of
  numerators over sums of denominators);
- the wall and CPU time per matrix;
- APT / SparseGPT: ratio of the totals, geometric mean of the per-layer ratios, layers APT wins.

Then it times SparseGPT and APT on synthetic 4096 x 4096 and 11008 x 4096 problems
(:func:`benchmarks.common.synthetic_problem`), next to two transcriptions of the reference
algorithm: ``reference`` (the layout and lazy blocks of IST-DASLab ``SparseGPT.fasterprune``,
float32) and ``plain`` (the same algorithm with no lazy blocks: every column updates every later
column at once).

    .venv/bin/python -m benchmarks.solvers [--methods magnitude,wanda,sparsegpt,apt]
        [--patterns 50%,60%,70%,2:4,4:8] [--layers REGEX] [--opt apt.refit=true ...]
        [--synthetic-shapes 4096x4096,11008x4096 | --no-synthetic] [--device cpu]
        [--out results/benchmarks/solvers.json]

Options given with ``--opt METHOD.KEY=VALUE`` (VALUE read as YAML, as ``apt prune --option``)
go to that method's ``prune`` as keyword arguments, so solver settings can be compared without
code edits.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import torch

from apt.pruning import METHODS, Target, prune_matrix
from apt.pruning.metrics import layer_error_parts
from benchmarks.common import (command, hessians_path, jsonable, load_average, load_hessians,
                               method_options, name_list, shape_list, synthetic_problem,
                               targets, timed, write_report)

DEFAULT_PATTERNS = "50%,60%,70%,2:4,4:8"
SYNTH_METHODS = "sparsegpt,sparsegpt_fp32,reference,plain,apt"


# ------------------------------------------------------------- reference transcriptions (timing)
def reference_fasterprune(W: torch.Tensor, H: torch.Tensor, sparsity: float, prune_n: int = 0,
                          prune_m: int = 0, blocksize: int = 128, percdamp: float = 0.01,
                          lazy: bool = True) -> torch.Tensor:
    """SparseGPT as the reference code computes it (float32, rows x columns layout).

    ``lazy=False`` is the plain form: no lazy batching, each column's error is applied at once
    to every later column of the whole matrix.
    """
    W = W.clone().float()
    H = H.clone().float()
    columns = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns, device=W.device)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)
    if not lazy:
        blocksize = columns
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone() if lazy else W
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if prune_n == 0:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        else:
            mask1 = torch.zeros_like(W1) == 1
        for i in range(count):
            if prune_n == 0 and i % 128 == 0:   # the reference's per-block-of-128 mask
                j2 = min(i + 128, count)
                tmp = W1[:, i:j2] ** 2 / (torch.diag(Hinv1)[i:j2].reshape((1, -1))) ** 2
                thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
                mask1[:, i:j2] = tmp <= thresh
            w = W1[:, i]
            d = Hinv1[i, i]
            if prune_n != 0 and i % prune_m == 0:
                tmp = (W1[:, i:(i + prune_m)] ** 2
                       / (torch.diag(Hinv1)[i:(i + prune_m)].reshape((1, -1))) ** 2)
                mask1.scatter_(1, i + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        if lazy:
            W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W


def solver_kwargs(opts: dict[str, dict[str, Any]], method: str,
                  percdamp: float | None) -> dict[str, Any]:
    """``prune_matrix`` keywords of ``method``: ``--percdamp``, unless ``--opt METHOD.percdamp``
    gives that method its own, and the method's other ``--opt`` values."""
    return {"percdamp": percdamp, **opts.get(method, {})}


# ------------------------------------------------------------------------------------- runs
def run_real(layers: dict[str, tuple[torch.Tensor, torch.Tensor]], methods: list[str],
             patterns: list[Target], opts: dict[str, dict[str, Any]], device: torch.device,
             blocksize: int, percdamp: float | None, tokens: int | None = None) -> dict[str, Any]:
    """``tokens``: the calibration tokens behind the Hessians, passed on as the engine does."""
    results: dict[str, Any] = {}
    hdt = torch.float64 if device.type == "cpu" else torch.float32
    on_dev = {name: (w.to(device), h.to(device=device, dtype=hdt))
              for name, (w, h) in layers.items()}
    for method in methods:
        results[method] = {}
        kwargs = {"tokens": tokens, "blocksize": blocksize,
                  **solver_kwargs(opts, method, percdamp)}
        for target in patterns:
            def prune(w, h, target=target):
                return prune_matrix(w, h, method, sparsity=target.sparsity,
                                    pattern=target.pattern_arg, **kwargs)

            entry: dict[str, Any] = {"pattern": target.pattern_arg, "sparsity": target.sparsity,
                                     "per_layer": {}}
            num_total = den_total = time_total = cpu_total = 0.0
            if device.type == "cuda":   # untimed: library handles, kernels' first load
                prune(*next(iter(on_dev.values())))
            for name, (w, h) in on_dev.items():
                res, dt, dc = timed(lambda: prune(w, h), device)
                num, den = layer_error_parts(w, res.weight, h)
                num_total, den_total = num_total + num, den_total + den
                time_total, cpu_total = time_total + dt, cpu_total + dc
                entry["per_layer"][name] = {"rel_error": num / den, "time_s": dt, "cpu_s": dc,
                                            "pruned_fraction": float(res.mask.float().mean()),
                                            "info": jsonable(res.info)}
            count = len(entry["per_layer"])
            entry.update({"status": "ok", "total_rel_error": num_total / den_total,
                          "mean_layer_rel_error": sum(v["rel_error"] for v in
                                                      entry["per_layer"].values()) / count,
                          "time_s_total": time_total, "cpu_s_total": cpu_total,
                          "time_s_per_matrix": time_total / count,
                          "cpu_s_per_matrix": cpu_total / count})
            results[method][target.label] = entry
            print(f"{method:>10} {target.label:>5}: total rel err {entry['total_rel_error']:.5f}  "
                  f"time {time_total:7.2f} s, cpu {cpu_total:7.2f} s "
                  f"({entry['cpu_s_per_matrix'] * 1e3:.0f} cpu-ms/matrix)", file=sys.stderr)
    return results


def compare(results: dict[str, Any], a: str = "apt", b: str = "sparsegpt") -> dict[str, Any]:
    """Per pattern: ``a``'s error and time relative to ``b``'s, in total and layer by layer."""
    out: dict[str, Any] = {}
    if a not in results or b not in results:
        return out
    for label, ra in results[a].items():
        rb = results[b].get(label)
        if ra.get("status") != "ok" or not rb or rb.get("status") != "ok":
            continue
        ratios = {n: ra["per_layer"][n]["rel_error"] / rb["per_layer"][n]["rel_error"]
                  for n in ra["per_layer"] if rb["per_layer"][n]["rel_error"] > 0}
        out[label] = {
            "error_ratio_total": ra["total_rel_error"] / rb["total_rel_error"],
            "error_ratio_geomean_layers": math.exp(sum(math.log(r) for r in ratios.values())
                                                   / len(ratios)),
            "layers_won": sum(r < 1 for r in ratios.values()),
            "layers": len(ratios),
            "worst_layer": max(ratios, key=ratios.get),
            "worst_layer_ratio": max(ratios.values()),
            "time_ratio": ra["time_s_total"] / rb["time_s_total"],
            "cpu_time_ratio": ra["cpu_s_total"] / max(rb["cpu_s_total"], 1e-12),
        }
    return out


def run_synthetic(shapes: list[tuple[int, int]], methods: list[str], patterns: list[Target],
                  opts: dict[str, dict[str, Any]], device: torch.device, reps: int,
                  blocksize: int, percdamp: float | None,
                  plain_max_rows: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for m, n in shapes:
        w, h = synthetic_problem(m, n, device)
        for target in patterns:
            nm = (target.pattern.n, target.pattern.m)
            for method in methods:
                row: dict[str, Any] = {"shape": [m, n], "pattern": target.label, "method": method}
                if method == "plain" and m > plain_max_rows:
                    row.update(status="skipped", reason=f"plain loop limited to <= "
                               f"{plain_max_rows} rows (--plain-max-rows)")
                    rows.append(row)
                    continue
                if method in ("reference", "plain"):
                    def once(method=method):
                        return reference_fasterprune(
                            w, h, target.sparsity, nm[0], nm[1], blocksize,
                            0.01 if percdamp is None else percdamp, lazy=(method == "reference"))
                else:
                    name, extra = method, solver_kwargs(opts, method, percdamp)
                    if method == "sparsegpt_fp32":
                        name, extra = "sparsegpt", {**solver_kwargs(opts, "sparsegpt", percdamp),
                                                    "dtype": torch.float32}

                    def once(name=name, extra=extra):
                        return prune_matrix(w, h, name, sparsity=target.sparsity,
                                            pattern=target.pattern_arg, blocksize=blocksize,
                                            **extra).weight
                times, cpus = [], []
                for _ in range(reps):
                    out, dt, dc = timed(once, device)
                    times.append(dt)
                    cpus.append(dc)
                num, den = layer_error_parts(w, out, h)
                zeros = int((out == 0).sum())
                row.update(status="ok", reps=reps, time_s=min(times), times_s=times,
                           cpu_s=min(cpus), cpus_s=cpus,
                           rel_error=num / den, pruned_fraction=zeros / out.numel())
                rows.append(row)
                print(f"synthetic {m}x{n} {target.label:>5} {method:>14}: {min(times):7.2f} s "
                      f"(cpu {min(cpus):7.2f} s) rel err {num / den:.5f}", file=sys.stderr)
                del out
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hessians", default=str(hessians_path()))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--patterns", default=DEFAULT_PATTERNS)
    ap.add_argument("--layers", default=None, help="regex on layer names (default: all)")
    ap.add_argument("--opt", action="append", default=[], metavar="METHOD.KEY=VALUE")
    ap.add_argument("--blocksize", type=int, default=128)
    ap.add_argument("--percdamp", type=float, default=None,
                    help="damping for every method (default: each method's own; the reference "
                         "transcriptions use SparseGPT's 0.01)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared machine single-thread CPU "
                    "time is the comparable figure; 0 keeps torch's default)")
    ap.add_argument("--no-real", action="store_true", help="skip the real-layer part")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the synthetic timing")
    ap.add_argument("--synthetic-shapes", default="4096x4096,11008x4096")
    ap.add_argument("--synthetic-methods", default=SYNTH_METHODS)
    ap.add_argument("--synthetic-patterns", default="50%,2:4")
    ap.add_argument("--reps", type=int, default=1, help="repetitions per synthetic timing (min)")
    ap.add_argument("--plain-max-rows", type=int, default=4096,
                    help="run the slow plain reference loop only up to this many rows")
    ap.add_argument("--out", default="results/benchmarks/solvers.json")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = name_list(args.methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    patterns = targets(args.patterns)
    opts = method_options(args.opt)
    t_start = time.time()

    report: dict[str, Any] = {
        "what": "relative layer error ||(W-W')X||^2/||WX||^2 = tr(dW H dW^T)/tr(W H W^T) "
                "and time per matrix, per method and pattern",
        "command": command("benchmarks.solvers", argv),
        "settings": {"methods": methods, "patterns": [t.label for t in patterns],
                     "options": opts, "blocksize": args.blocksize,
                     "percdamp": args.percdamp, "device": str(device),
                     "layers_regex": args.layers, "reps": args.reps,
                     "count_rule": "floor(sparsity * total)"},
        "load_average_at_start": load_average(),
        "timing_note": "time_s is wall time, cpu_s the process CPU time (comparable on a shared "
                       "machine when --threads 1); on CUDA only time_s means anything",
    }
    if not args.no_real:
        data, meta = load_hessians(args.hessians, args.layers)
        report["hessians"] = {"file": str(args.hessians), **meta,
                              "layers": {k: list(v[0].shape) for k, v in data.items()}}
        results = run_real(data, methods, patterns, opts, device, args.blocksize, args.percdamp,
                           tokens=meta.get("ntokens"))
        report["real"] = results
        report["apt_vs_sparsegpt"] = compare(results)
        for label, c in report["apt_vs_sparsegpt"].items():
            print(f"APT/SparseGPT {label:>5}: total {c['error_ratio_total']:.4f}, geomean "
                  f"{c['error_ratio_geomean_layers']:.4f}, wins {c['layers_won']}/{c['layers']},"
                  f" time x{c['time_ratio']:.2f} (cpu x{c['cpu_time_ratio']:.2f})", file=sys.stderr)
    if not args.no_synthetic:
        report["synthetic"] = run_synthetic(
            shape_list(args.synthetic_shapes, "--synthetic-shapes"),
            name_list(args.synthetic_methods), targets(args.synthetic_patterns,
                                                       "--synthetic-patterns"),
            opts, device, args.reps, args.blocksize, args.percdamp, args.plain_max_rows)
        report["synthetic_note"] = (
            "reference = transcription of IST-DASLab SparseGPT.fasterprune (float32, rows x "
            "columns layout, lazy blocks); plain = same without lazy blocks; sparsegpt = ours at "
            "its default compute dtype (float64 on CPU); sparsegpt_fp32 = ours in float32. "
            f"time_s = min over {args.reps} repetition(s).")
    report["wall_s"] = time.time() - t_start
    report["load_average_at_end"] = load_average()
    write_report(args.out, report)
    print(f"wrote {args.out} ({report['wall_s']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
