"""Exploratory: APT's damping in units of mean(diag H) (the method's convention) or median(diag H).

    .venv/bin/python benchmarks/apt_damping_unit.py [--patterns 50%,2:4] [--threads 2]
        [--medians 0.05,0.1,0.2,0.4] [--hessians FILE] [--heldout FILE]
        [--out results/benchmarks/apt_damping_unit.json]

Motivation (``src/apt/pruning/apt.py``): a damping of 0.1 x mean(diag H) hurt exactly the layers
whose diag H is most skewed (mean / median up to 21), where the mean makes the ridge penalty
large for most inputs. The median unit is APT's ``damp_unit="median"`` (now its default).
Relative layer error over the 35 layers of ``hessians_smollm2.pt``, in-sample
and on the held-out Hessians (``collect_hessians.py --seed 12345 --nsamples 32``), APT / our
SparseGPT, and the layers won held-out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from apt.io import write_json_atomic
from apt.provenance import environment
from apt.pruning import prune_matrix
from apt.pruning.metrics import layer_error_parts

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "resources" / "bench"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hessians", default=str(BENCH / "hessians_smollm2.pt"))
    ap.add_argument("--heldout", default=str(BENCH / "hessians_smollm2_heldout_s12345_n32.pt"))
    ap.add_argument("--patterns", default="50%,2:4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--medians", default="0.05,0.1,0.2,0.4",
                    help="damping values, in units of median(diag H), to try")
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/apt_damping_unit.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    train, held = torch.load(args.hessians), torch.load(args.heldout)
    variants = {"sparsegpt": None, "mean_0.02": ("mean", 0.02)}
    variants.update({f"median_{c}": ("median", float(c)) for c in args.medians.split(",")})
    results = {}
    for pspec in args.patterns.split(","):
        kw = ({"pattern": pspec} if ":" in pspec else
              {"pattern": "unstructured", "sparsity": float(pspec.rstrip("%")) / 100})
        tot = {v: {"in": 0.0, "out": 0.0, "won_out": 0} for v in variants}
        for name, item in train.items():
            if name == "__meta__":
                continue
            W, H = item
            Hh = held[name][1].double()
            nums = {}
            for v, spec in variants.items():
                if spec is None:
                    r = prune_matrix(W, H, method="sparsegpt", **kw)
                else:
                    unit, c = spec
                    r = prune_matrix(W, H, method="apt", percdamp=c, damp_unit=unit, **kw)
                nums[v] = layer_error_parts(W, r.weight, Hh)[0]
                tot[v]["in"] += layer_error_parts(W, r.weight, H.double())[0]
                tot[v]["out"] += nums[v]
            for v in variants:
                tot[v]["won_out"] += int(nums[v] < nums["sparsegpt"])
        ref = tot["sparsegpt"]
        summary = {v: {"in_sample_ratio": t["in"] / ref["in"], "heldout_ratio": t["out"] / ref["out"],
                       "heldout_won": t["won_out"], "layers": len(train) - 1} for v, t in tot.items()}
        for v, s in summary.items():
            print(f"{pspec:>4} {v:20s} in-sample {s['in_sample_ratio']:.3f}  held-out "
                  f"{s['heldout_ratio']:.3f}  won held-out {s['heldout_won']}/{s['layers']}", flush=True)
        results[pspec] = summary
    meta = {"hessians": train.get("__meta__"), "heldout": held.get("__meta__")}
    write_json_atomic(Path(args.out), {"meta": meta,
        "command": " ".join([".venv/bin/python", "benchmarks/apt_damping_unit.py", *sys.argv[1:]]),
        "hessians": args.hessians, "heldout": args.heldout, "results": results,
        "environment": environment()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
