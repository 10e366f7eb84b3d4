"""A smaller copy of a Hessian file of :mod:`benchmarks.collect_hessians`: the layers whose name
matches a regex, with equal Hessians (q / k / v, gate / up read the same input) stored once.

Made to carry real layers to a GPU machine, where the working tree that travels is limited
(block 15 of ``resources/bench/hessians_smollm2.pt``: 41 MB instead of 245 MB)::

    .venv/bin/python -m benchmarks.hessian_subset --layers 'layers\\.15\\.' \\
        --out .devcarry/hessians_smollm2_block15.pt
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import hessians_path, load_hessians


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hessians", default=str(hessians_path()))
    ap.add_argument("--layers", required=True, help="regex on layer names")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    data, meta = load_hessians(args.hessians, args.layers)
    kept: list[torch.Tensor] = []
    out = {}
    for name, (weight, hessian) in data.items():
        same = next((h for h in kept if h.shape == hessian.shape and torch.equal(h, hessian)),
                    None)
        if same is None:
            kept.append(hessian)
        out[name] = (weight.clone(), hessian if same is None else same)  # saved once if shared
    meta["subset"] = f"layers matching {args.layers!r} of {args.hessians}; equal Hessians shared"
    out["__meta__"] = meta
    torch.save(out, args.out)
    print(f"wrote {args.out}: {len(out) - 1} layers, {len(kept)} distinct Hessians")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
