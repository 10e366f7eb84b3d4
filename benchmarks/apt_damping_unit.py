"""APT's damping in units of mean(diag H) (SparseGPT's convention) or of median(diag H).

    .venv/bin/python -m benchmarks.apt_damping_unit [--patterns 50%,2:4] [--threads 2]
        [--medians 0.05,0.1,0.2,0.4] [--hessians FILE] [--heldout FILE]
        [--out results/benchmarks/apt_damping_unit.json]

Motivation: a damping of 0.1 x mean(diag H) hurt exactly the layers whose diag H is most skewed
(mean / median up to 21), where the mean makes the ridge penalty large for most inputs; APT's
option ``damp_unit`` chooses the unit. Relative layer error over the layers of a Hessian file
(:mod:`benchmarks.collect_hessians`), in-sample and on held-out Hessians of other calibration
windows (``collect_hessians --seed 12345 --nsamples 32``), APT / our SparseGPT, and the layers
won held-out. Run with Hessians of 8k, 16k and 32k calibration tokens it shows how the best
damping follows the calibration size.
"""

from __future__ import annotations

import argparse

import torch

from apt.pruning import prune_matrix
from apt.pruning.metrics import layer_error_parts
from benchmarks.common import command, hessians_path, load_hessians, targets, write_report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hessians", default=str(hessians_path()))
    ap.add_argument("--heldout", default=str(hessians_path("hessians_smollm2_heldout_s12345_n32.pt")))
    ap.add_argument("--patterns", default="50%,2:4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--medians", default="0.05,0.1,0.2,0.4",
                    help="damping values, in units of median(diag H), to try")
    ap.add_argument("--out", default="results/benchmarks/apt_damping_unit.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    (train, train_meta), (held, held_meta) = load_hessians(args.hessians), load_hessians(args.heldout)
    variants = {"sparsegpt": None, "mean_0.02": ("mean", 0.02)}
    variants.update({f"median_{c}": ("median", float(c)) for c in args.medians.split(",")})
    results = {}
    for target in targets(args.patterns):
        kw = {"pattern": target.pattern_arg, "sparsity": target.sparsity}
        tot = {v: {"in": 0.0, "out": 0.0, "won_out": 0} for v in variants}
        for name, (W, H) in train.items():
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
                       "heldout_won": t["won_out"], "layers": len(train)} for v, t in tot.items()}
        for v, s in summary.items():
            print(f"{target.label:>4} {v:20s} in-sample {s['in_sample_ratio']:.3f}  held-out "
                  f"{s['heldout_ratio']:.3f}  won held-out {s['heldout_won']}/{s['layers']}",
                  flush=True)
        results[target.label] = summary
    write_report(args.out, {
        "meta": {"hessians": train_meta or None, "heldout": held_meta or None},
        "command": command("benchmarks.apt_damping_unit", argv),
        "hessians": args.hessians, "heldout": args.heldout, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
