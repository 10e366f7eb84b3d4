"""Benchmark `apt prune` on SmolLM2-135M (offline asset) for each method at 50 % and 2:4, on CPU.

    .venv/bin/python -m benchmarks.prune_smollm2 [--methods magnitude,wanda,sparsegpt,apt]
        [--patterns 0.5,2:4] [--nsamples 32] [--seqlen 512] [--calib c4-sample] [--threads 2]
        [--parallel 1] [--out results/benchmarks/prune_smollm2.json]

Runs the real command (a fresh process per run, so peak RSS is that run's) with the pipeline's
default calibration (32 windows x 512 tokens of c4-sample, seed 0) and records wall time, the
engine's own timings, the child's CPU time and peak RSS (``wait4``; CPU time is the better
measure on a shared machine) and the report's totals; a failed run is recorded with the last
line of its log. Checkpoints go to a temporary folder and are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from apt.pruning import Target
from benchmarks.common import command, name_list, targets, write_report


def pattern_flags(target: Target) -> list[str]:
    """``apt prune``'s flags for a sparsity target."""
    flags = ["--pattern", target.pattern_arg]
    return flags if target.pattern.structured else flags + ["--sparsity", f"{target.sparsity:g}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default="magnitude,wanda,sparsegpt,apt")
    ap.add_argument("--patterns", default="0.5,2:4")
    ap.add_argument("--calib", default="c4-sample")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--parallel", type=int, default=1, help="runs at the same time")
    ap.add_argument("--out", default="results/benchmarks/prune_smollm2.json")
    args = ap.parse_args(argv)

    apt = str(Path(sys.executable).with_name("apt"))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    jobs = [(m, t) for m in name_list(args.methods) for t in targets(args.patterns)]
    runs = []
    tmp = Path(tempfile.mkdtemp(prefix="prune_bench-"))
    running: dict[int, tuple] = {}
    try:
        while jobs or running:
            while jobs and len(running) < args.parallel:
                method, target = jobs.pop(0)
                out = tmp / f"{method}-{target.token}"
                cmd = [apt, "prune", "--model", args.model, "--method", method,
                       *pattern_flags(target), "--calib", args.calib,
                       "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen),
                       "--seed", str(args.seed), "--device", args.device, "--out", str(out),
                       "--no-progress"]
                log = open(tmp / f"{out.name}.log", "w+")
                proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
                running[proc.pid] = (proc, method, target.label, out, cmd, log,
                                     time.perf_counter())
            pid, status, usage = os.wait4(-1, 0)
            if pid not in running:
                continue
            proc, method, pattern, out, cmd, log, t0 = running.pop(pid)
            wall = time.perf_counter() - t0
            code = os.waitstatus_to_exitcode(status)
            log.seek(0)
            text = log.read()
            log.close()
            entry = {"method": method, "pattern": pattern, "command": "apt " + " ".join(cmd[1:]),
                     "returncode": code, "wall_s": round(wall, 1),
                     "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                     "max_rss_mb": round(usage.ru_maxrss / 1024, 1)}
            if code == 0:
                rep = json.loads((out / "prune_report.json").read_text())
                entry.update({"status": "ok", "engine_time_s": rep["time_s"],
                              "solver_time_s": round(rep["totals"]["solver_time_s"], 2),
                              "sparsity": rep["totals"]["sparsity"],
                              "mean_rel_error": rep["totals"]["mean_rel_error"],
                              "memory": rep["memory"]})
            else:
                lines = [l for l in text.strip().splitlines() if l.strip()] or [""]
                entry["status"] = "failed"
                entry["error"] = lines[-1]
            runs.append(entry)
            print(json.dumps({k: entry.get(k) for k in ("method", "pattern", "status", "wall_s",
                                                          "cpu_s", "max_rss_mb")}), flush=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        for proc, *_ in running.values():
            proc.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    write_report(args.out, {
        "benchmark": "apt prune on SmolLM2-135M",
        "command": command("benchmarks.prune_smollm2", argv),
        "settings": {"model": args.model, "calib": args.calib, "nsamples": args.nsamples,
                     "seqlen": args.seqlen, "seed": args.seed, "threads": args.threads,
                     "parallel": args.parallel, "device": args.device},
        "note": "machine shared with other jobs: wall times are upper bounds",
        "runs": runs,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
