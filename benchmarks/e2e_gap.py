"""End to end: how much of the perplexity gap between SparseGPT and the dense model APT closes.

Superseded by the pipeline config ``config/compare.yaml`` (the same comparison over calibration
draws, run by ``snakemake --configfile``); kept until that config has reproduced its figures.

    .venv/bin/python -m benchmarks.e2e_gap [--patterns 0.5,2:4,4:8,0.7] [--seeds 0,1,2]
        [--nsamples 16] [--seqlen 512] [--datasets wiki,c4-sample] [--windows 32]
        [--parallel 2] [--threads 1] [--apt-option KEY=VALUE ...] [--apt-percdamp P]
        [--work resources/bench/e2e]
        [--out results/benchmarks/e2e_gap.json]

For every calibration seed (a fresh ``apt calib`` draw of the C4 sample) and pattern, prunes
SmolLM2-135M with SparseGPT and with APT (their defaults, through the real ``apt prune``),
evaluates perplexity on the first ``--windows`` windows of each test text and records
``closed = (ppl_sparsegpt - ppl_apt) / (ppl_sparsegpt - ppl_dense)``. Sequential pruning on a
few thousand calibration tokens varies a lot from one draw to the next, so the summary gives
the mean and the range over seeds, not one run.

Each finished run is a JSON file under ``--work`` (checkpoints are deleted once evaluated), so
an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from apt.pruning import parse_target
from benchmarks.common import command, key_values, name_list, write_report
from benchmarks.prune_smollm2 import pattern_flags

METHODS = ("sparsegpt", "apt")


class Runner:
    def __init__(self, args):
        self.args = args
        self.apt = str(Path(sys.executable).with_name("apt"))
        self.env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
                        MKL_NUM_THREADS=str(args.threads))
        self.work = Path(args.work)

    def run(self, cmd: list[str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as fh:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env)
        if proc.returncode:
            raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")

    def calib(self, seed: int) -> Path:
        a = self.args
        path = self.work / f"calib-n{a.nsamples}-l{a.seqlen}-s{seed}.pt"
        if not path.exists():
            self.run([self.apt, "calib", "--model", a.model, "--dataset", "c4-sample",
                      "--nsamples", str(a.nsamples), "--seqlen", str(a.seqlen), "--seed", str(seed),
                      "--out", str(path)], self.work / "logs" / f"calib-s{seed}.log")
        return path

    def ppl(self, model: str, name: str) -> dict[str, float]:
        out = {}
        for ds in self.args.datasets.split(","):
            dest = self.work / "ppl" / f"{name}-{ds}.json"
            if not dest.exists():
                self.run([self.apt, "eval", "ppl", "--model", model, "--dataset", ds,
                          "--seqlen", str(self.args.seqlen), "--max-windows", str(self.args.windows),
                          "--out", str(dest)], self.work / "logs" / f"{name}.log")
            out[ds] = json.loads(dest.read_text())["ppl"]
        return out

    def one(self, seed: int, pattern: str, method: str) -> dict:
        target = parse_target(pattern)
        name = f"s{seed}-{method}-{target.token}"
        result = self.work / "runs" / f"{name}.json"
        if result.exists():
            return json.loads(result.read_text())
        calib = self.calib(seed)
        ckpt = self.work / "models" / name
        t0 = time.time()
        extra = [f for kv in self.args.apt_option for f in ("--option", kv)] if method == "apt" else []
        if method == "apt" and self.args.apt_percdamp is not None:
            extra += ["--percdamp", str(self.args.apt_percdamp)]
        self.run([self.apt, "prune", "--model", self.args.model, "--method", method,
                  *pattern_flags(target), "--calib", str(calib), "--out", str(ckpt), "--force",
                  "--no-progress", *extra], self.work / "logs" / f"{name}.log")
        report = json.loads((ckpt / "prune_report.json").read_text())
        rec = {"seed": seed, "pattern": pattern, "method": method, "prune_wall_s": time.time() - t0,
               "solver_time_s": report["totals"].get("solver_time_s"),
               "mean_rel_layer_error": report["totals"].get("mean_rel_error"),
               "percdamp": report.get("settings", {}).get("percdamp"),
               "options": report.get("settings", {}).get("options"),
               "ppl": self.ppl(str(ckpt), name)}
        shutil.rmtree(ckpt, ignore_errors=True)
        write_json_atomic(result, rec)
        print(name, rec["ppl"], flush=True)
        return rec


def summarize(dense: dict, runs: list[dict], datasets: list[str]) -> dict:
    by = {(r["seed"], r["pattern"], r["method"]): r for r in runs}
    out = {}
    for pattern in sorted({r["pattern"] for r in runs}):
        per_ds = {}
        for ds in datasets:
            closed = []
            for seed in sorted({r["seed"] for r in runs}):
                s, a = by.get((seed, pattern, "sparsegpt")), by.get((seed, pattern, "apt"))
                if s and a:
                    ps, pa = s["ppl"][ds], a["ppl"][ds]
                    closed.append({"seed": seed, "sparsegpt": ps, "apt": pa,
                                   "closed": (ps - pa) / (ps - dense[ds])})
            if closed:
                c = [x["closed"] for x in closed]
                per_ds[ds] = {"mean_closed": sum(c) / len(c), "min_closed": min(c),
                              "max_closed": max(c), "seeds": closed}
        out[pattern] = per_ds
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--patterns", default="0.5,2:4,4:8,0.7")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--datasets", default="wiki,c4-sample")
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--apt-option", action="append", default=[], metavar="KEY=VALUE",
                    help="APT solver option (apt prune --option), repeatable; use its own --work")
    ap.add_argument("--apt-percdamp", type=float, default=None,
                    help="APT's damping (apt prune --percdamp; default: its own); own --work")
    ap.add_argument("--work", default="resources/bench/e2e")
    ap.add_argument("--out", default="results/benchmarks/e2e_gap.json")
    args = ap.parse_args(argv)
    key_values(args.apt_option, "--apt-option")     # refused here, not after the first runs
    r = Runner(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:          # calibration draws first, one at a time
        r.calib(seed)
    dense = r.ppl(args.model, "dense")
    jobs = [(s, p, m) for s in seeds for p in name_list(args.patterns) for m in METHODS]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda j: r.one(*j), jobs))
    datasets = args.datasets.split(",")
    out = {"command": command("benchmarks.e2e_gap", argv),
           "settings": vars(args), "dense": dense, "runs": runs,
           "summary": summarize(dense, runs, datasets)}
    write_report(args.out, out)
    for pattern, per_ds in out["summary"].items():
        for ds, s in per_ds.items():
            print(f"{pattern:>5} {ds:10s} closed mean {s['mean_closed']:.3f} "
                  f"[{s['min_closed']:.3f}, {s['max_closed']:.3f}] over {len(s['seeds'])} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
