"""APT variants against our SparseGPT on real SmolLM2 layer Hessians.

    .venv/bin/python -m benchmarks.apt_variants [--layers REGEX] [--patterns 50%,2:4]
        [--variants NAME={...} ...] [--heldout FILE] [--threads 2]
        [--out results/benchmarks/apt_variants.json]

For every layer and pattern: relative layer error tr(dW H dW^T)/tr(W H W^T) (undamped H) and
wall time per matrix, for sparsegpt and each APT variant (``NAME={...}``: options of APT's
``prune``, JSON or YAML flow style).
Totals are sums of numerators over sums of denominators; "won" counts layers where the
variant's error is below SparseGPT's. A variant's JSON may set ``percdamp`` (else the method's
default). With ``--heldout`` (Hessians of other windows, from ``collect_hessians --seed``),
the same pruned weights are also scored on those: the out-of-sample layer error, which is what
perplexity sees; the in-sample one rewards fitting the few calibration tokens.
"""

from __future__ import annotations

import argparse
import time

import torch

from apt.pruning import prune_matrix
from apt.pruning.metrics import layer_error_parts
from benchmarks.common import (command, hessians_path, load_hessians, targets, variants,
                               write_report)

DEFAULT_VARIANTS = ["default={}", "no_refit={refit: false}",
                    "blockwise={search: blockwise, percdamp: 0.1}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hessians", default=str(hessians_path()))
    ap.add_argument("--layers", default=r"layers\.(7|23)\.")
    ap.add_argument("--patterns", default="50%,60%,70%,2:4,4:8")
    ap.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS,
                    help="NAME={...}: options of APT's prune")
    ap.add_argument("--heldout", default=None,
                    help="Hessians of other calibration windows (collect_hessians --seed S): "
                         "also report the layer error on them (out-of-sample)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/benchmarks/apt_variants.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = variants(args.variants)
    data, meta = load_hessians(args.hessians, args.layers)
    heldout, heldout_meta = load_hessians(args.heldout) if args.heldout else (None, None)
    layers = list(data)
    # the calibration tokens behind the Hessians, as the engine passes them (APT's damping
    # follows them); a variant with "tokens": null gets the fixed default
    tokens = meta.get("ntokens")
    results = {}
    for target in targets(args.patterns):
        pspec, pattern, sparsity = target.label, target.pattern_arg, target.sparsity
        rows = {}
        for name in layers:
            W, H = data[name]
            row = {}
            r = None
            for meth, opts in [("sparsegpt", {})] + [(v, o) for v, o in options.items()]:
                method = "sparsegpt" if meth == "sparsegpt" else "apt"
                t = time.perf_counter()
                r = prune_matrix(W, H, method=method, sparsity=sparsity, pattern=pattern,
                                 **{"tokens": tokens, **opts})
                dt = time.perf_counter() - t
                num, den = layer_error_parts(W, r.weight, H.double())
                row[meth] = {"num": num, "den": den, "rel": num / den, "time_s": dt,
                             "pruned": int(r.mask.sum())}
                if heldout is not None:
                    hnum, hden = layer_error_parts(W, r.weight, heldout[name][1].double())
                    row[meth].update({"heldout_num": hnum, "heldout_den": hden,
                                      "heldout_rel": hnum / hden})
            rows[name] = row
            print(pspec, name, " ".join(f"{k}={v['rel']:.4f}/{v['time_s']:.2f}s"
                                        for k, v in row.items()), flush=True)
        summ = {}
        for meth in ["sparsegpt", *options]:
            num = sum(rows[l][meth]["num"] for l in layers)
            den = sum(rows[l][meth]["den"] for l in layers)
            won = sum(rows[l][meth]["num"] < rows[l]["sparsegpt"]["num"] for l in layers)
            t = sum(rows[l][meth]["time_s"] for l in layers)
            summ[meth] = {"total_rel": num / den, "won": won, "layers": len(layers), "time_s": t}
            if heldout is not None:
                hnum = sum(rows[l][meth]["heldout_num"] for l in layers)
                hden = sum(rows[l][meth]["heldout_den"] for l in layers)
                summ[meth]["heldout_total_rel"] = hnum / hden
                summ[meth]["heldout_won"] = sum(
                    rows[l][meth]["heldout_num"] < rows[l]["sparsegpt"]["heldout_num"] for l in layers)
        ref = summ["sparsegpt"]
        for meth, s in summ.items():
            s["ratio_vs_sparsegpt"] = s["total_rel"] / ref["total_rel"]
            s["time_ratio_vs_sparsegpt"] = s["time_s"] / ref["time_s"]
            held = ""
            if heldout is not None:
                s["heldout_ratio_vs_sparsegpt"] = s["heldout_total_rel"] / ref["heldout_total_rel"]
                held = (f" heldout ratio {s['heldout_ratio_vs_sparsegpt']:.3f}"
                        f" won {s['heldout_won']}/{s['layers']}")
            print(f"  {pspec} {meth:24s} total {s['total_rel']:.5f} ratio {s['ratio_vs_sparsegpt']:.3f}"
                  f" won {s['won']}/{s['layers']}{held} time {s['time_s']:.2f}s"
                  f" x{s['time_ratio_vs_sparsegpt']:.2f}", flush=True)
        results[pspec] = {"summary": summ, "layers": rows}
    write_report(args.out, {
        "command": command("benchmarks.apt_variants", argv), "variants": options,
        "threads": args.threads, "hessians": args.hessians, "meta": meta or None,
        "heldout": args.heldout, "heldout_meta": heldout_meta or None, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
