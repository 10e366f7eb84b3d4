"""Speed of a pruned model with the sparse kernels torch has, against the same weights dense.

CPU (``--device cpu``): torch's sparse CSR matrix product (MKL) for each distinct shape of the
pruned linears, against dense ``F.linear`` at the same dtype, for one token (decode) and for
``--tokens`` tokens (prefill); and the whole model with every pruned linear replaced by its CSR
matrix: a prefill of ``--tokens`` tokens and ``--decode`` decode steps with the KV cache. CSR
has no bfloat16 CPU kernel in torch; asking for one is recorded as unsupported.

CUDA (``--device cuda``): 2:4 checkpoints only, with ``torch.sparse.to_sparse_semi_structured``
(cuSPARSELt / CUTLASS) per linear and for the whole model (prefill, decode), against dense at the
same dtype (float16 or bfloat16). Without a CUDA device this part prints that it is skipped and
records it as skipped.

``--random smollm2`` / ``llama7b`` (``--layers K``) stands in for a checkpoint where none is at
hand (a GPU machine without the offline assets): a LLaMA model of that shape with random weights,
each linear of its blocks pruned by magnitude to each ``--patterns`` entry. The kernels' speed
depends on the shapes and the pattern, not on the values.

Every timing is the median of ``--repeats`` runs after a warm-up, the dense and sparse runs
interleaved; outputs are compared (max abs difference) so that a fast wrong kernel shows.

    PYTHONPATH=src .venv/bin/python benchmarks/sparse_speed.py --pruned W/wanda-50 W/wanda-24 \
        | --random smollm2 [--layers K] [--patterns 50%,2:4]  [--device cpu|cuda] [--dtype float32] [--tokens 256] [--decode 16] [--repeats 5] \
        [--out results/benchmarks/sparse_speed_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each no-argument callable, runs interleaved, one warm-up each."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    sync(device)
    for _ in range(repeats):
        for k, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


class CSRLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` held as a sparse CSR matrix (CPU benchmark only)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight_csr = linear.weight.detach().to_sparse_csr()
        self.bias = linear.bias
        self.out_features = linear.out_features

    def forward(self, x):
        flat = x.reshape(-1, x.shape[-1])
        y = (self.weight_csr @ flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def pruned_linears(model, report) -> dict[str, nn.Linear]:
    return {r["name"]: model.get_submodule(r["name"]) for r in report["modules"]}


def swap(model, modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Put each ``name -> module`` in place in ``model``; returns the modules replaced."""
    old = {}
    for name, module in modules.items():
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent)
        old[name] = getattr(holder, child)
        setattr(holder, child, module)
    return old


@torch.no_grad()
def forward_times(model, ids, decode: int, repeats: int, device) -> dict[str, float]:
    """Seconds of one prefill of ``ids`` and of one decode step (median over the steps)."""
    from transformers import DynamicCache

    def prefill():
        return model(input_ids=ids, use_cache=False).logits

    def steps():
        cache = DynamicCache()
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
        tok = out.logits[:, -1:].argmax(-1)
        secs = []
        for _ in range(decode):
            sync(device)
            t = time.perf_counter()
            out = model(input_ids=tok, past_key_values=cache, use_cache=True)
            sync(device)
            secs.append(time.perf_counter() - t)
            tok = out.logits[:, -1:].argmax(-1)
        return statistics.median(secs)

    prefill()
    pre = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        prefill()
        sync(device)
        pre.append(time.perf_counter() - t)
    return {"prefill_s": statistics.median(pre), "decode_step_s": steps(),
            "logits": prefill()[0, -1].float().cpu()}


@torch.no_grad()
def cpu_part(model, report, args, device) -> dict:
    dtype = model.dtype
    layers = pruned_linears(model, report)
    shapes = {}
    for name, lin in layers.items():
        shapes.setdefault(tuple(lin.weight.shape), name)
    per_linear = []
    gen = torch.Generator().manual_seed(0)
    for shape, name in sorted(shapes.items(), key=lambda kv: -kv[0][0] * kv[0][1]):
        w = layers[name].weight.detach()
        row = {"layer": name, "shape": list(shape), "zeros": float((w == 0).float().mean())}
        try:
            csr = w.to_sparse_csr()
            for tokens in (1, args.tokens):
                x = torch.randn(tokens, shape[1], generator=gen).to(dtype)
                t = median_time({"dense": lambda: torch.nn.functional.linear(x, w),
                                 "csr": lambda: (csr @ x.t()).t()}, args.repeats * 4, device)
                diff = float(((csr @ x.t()).t() - torch.nn.functional.linear(x, w)).abs().max())
                row[f"tokens_{tokens}"] = {"dense_s": t["dense"], "csr_s": t["csr"],
                                           "csr_over_dense": t["csr"] / t["dense"],
                                           "max_abs_diff": diff}
        except (RuntimeError, NotImplementedError) as exc:
            row["unsupported"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        per_linear.append(row)
        print(f"  linear {name} {list(shape)}: " + (row.get("unsupported") or ", ".join(
            f"{k}: dense {v['dense_s'] * 1e3:.3f} ms, csr {v['csr_s'] * 1e3:.3f} ms "
            f"(x{v['csr_over_dense']:.2f})" for k, v in row.items() if k.startswith("tokens_"))),
            flush=True)
    whole = {}
    if not any("unsupported" in r for r in per_linear):
        ids = torch.randint(0, model.config.vocab_size, (1, args.tokens), generator=gen)
        dense = forward_times(model, ids, args.decode, args.repeats, device)
        old = swap(model, {name: CSRLinear(lin) for name, lin in layers.items()})
        try:
            sparse = forward_times(model, ids, args.decode, args.repeats, device)
        finally:
            swap(model, old)
        whole = {"dense": {k: v for k, v in dense.items() if k != "logits"},
                 "csr": {k: v for k, v in sparse.items() if k != "logits"},
                 "prefill_csr_over_dense": sparse["prefill_s"] / dense["prefill_s"],
                 "decode_csr_over_dense": sparse["decode_step_s"] / dense["decode_step_s"],
                 "last_logits_max_abs_diff": float((sparse["logits"] - dense["logits"]).abs().max())}
        print(f"  whole model: prefill {args.tokens} tokens dense {dense['prefill_s']:.3f} s, csr "
              f"{sparse['prefill_s']:.3f} s; decode step dense {dense['decode_step_s'] * 1e3:.1f} "
              f"ms, csr {sparse['decode_step_s'] * 1e3:.1f} ms", flush=True)
    return {"kernel": "torch sparse CSR @ dense (MKL)", "per_linear": per_linear,
            "whole_model": whole}


@torch.no_grad()
def cuda_part(model, report, args, device) -> dict:
    from torch.sparse import to_sparse_semi_structured

    if report["settings"]["pattern"] != "2:4":
        return {"skipped": f"pattern {report['settings']['pattern']}: the semi-structured "
                           "kernels run 2:4 only"}
    layers = pruned_linears(model, report)
    shapes = {}
    for name, lin in layers.items():
        shapes.setdefault(tuple(lin.weight.shape), name)
    per_linear = []
    for shape, name in sorted(shapes.items(), key=lambda kv: -kv[0][0] * kv[0][1]):
        w = layers[name].weight.detach()
        row = {"layer": name, "shape": list(shape)}
        try:
            ws = to_sparse_semi_structured(w)
            for tokens in (1, 16, args.tokens):
                x = torch.randn(tokens, shape[1], device=device, dtype=w.dtype)
                t = median_time({"dense": lambda: torch.nn.functional.linear(x, w),
                                 "2:4": lambda: torch.nn.functional.linear(x, ws)},
                                args.repeats * 10, device)
                diff = float((torch.nn.functional.linear(x, ws)
                              - torch.nn.functional.linear(x, w)).abs().max())
                row[f"tokens_{tokens}"] = {"dense_s": t["dense"], "sparse24_s": t["2:4"],
                                           "dense_over_sparse24": t["dense"] / t["2:4"],
                                           "max_abs_diff": diff}
        except (RuntimeError, NotImplementedError, ValueError) as exc:
            row["unsupported"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        per_linear.append(row)
        print(f"  linear {name} {list(shape)}: {row}", flush=True)
    whole = {}
    try:
        ids = torch.randint(0, model.config.vocab_size, (1, args.tokens), device=device)
        dense = forward_times(model, ids, args.decode, args.repeats, device)
        for lin in layers.values():
            lin.weight = nn.Parameter(to_sparse_semi_structured(lin.weight.detach()),
                                      requires_grad=False)
        sparse = forward_times(model, ids, args.decode, args.repeats, device)
        whole = {"dense": {k: v for k, v in dense.items() if k != "logits"},
                 "sparse24": {k: v for k, v in sparse.items() if k != "logits"},
                 "prefill_speedup": dense["prefill_s"] / sparse["prefill_s"],
                 "decode_speedup": dense["decode_step_s"] / sparse["decode_step_s"],
                 "last_logits_max_abs_diff": float((sparse["logits"] - dense["logits"]).abs().max())}
        print(f"  whole model: {whole}", flush=True)
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        whole = {"unsupported": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
    return {"kernel": "torch.sparse.to_sparse_semi_structured (2:4)",
            "backend_cusparselt": bool(getattr(torch.backends, "cusparselt", None)
                                       and torch.backends.cusparselt.is_available()),
            "per_linear": per_linear, "whole_model": whole}


def random_checkpoint(shape: str, layers: int | None, pattern: str, dtype, device):
    """A random-weight LLaMA of ``shape`` with every block linear magnitude-pruned to ``pattern``."""
    from apt.pruning import parse_target
    from benchmarks.engine_random import build_model

    from apt.models import adapter_for
    from apt.pruning import prune_matrix

    target = parse_target(pattern)
    pat, sparsity = target.pattern_arg, (None if target.pattern.structured else target.sparsity)
    model, _ = build_model(shape, layers, torch.float32)
    adapter = adapter_for(model)
    modules = []
    for i, block in enumerate(adapter.blocks(model)):
        for name, module in adapter.prunable(block).items():
            res = prune_matrix(module.weight.data, None, method="magnitude", sparsity=sparsity,
                               pattern=pat)
            module.weight.data.copy_(res.weight)
            modules.append({"name": f"{adapter.blocks_path}.{i}.{name}"})
    report = {"settings": {"pattern": pat, "sparsity": sparsity}, "modules": modules}
    return model.to(device=device, dtype=dtype), report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pruned", nargs="+", default=[], help="folders written by apt prune")
    ap.add_argument("--random", choices=("smollm2", "llama7b"), default=None,
                    help="random-weight model of this shape instead of --pruned folders")
    ap.add_argument("--layers", type=int, default=None, help="blocks of the --random model")
    ap.add_argument("--patterns", default="50%,2:4", help="patterns of the --random model")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--dtype", default=None,
                    help="float32 (CPU default) / float16 (CUDA default) / bfloat16")
    ap.add_argument("--tokens", type=int, default=256, help="prefill length (and linear rows)")
    ap.add_argument("--decode", type=int, default=16, help="decode steps timed")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", default=None,
                    help="default results/benchmarks/sparse_speed_<device>.json")
    args = ap.parse_args(argv)

    from apt.io import write_json_atomic
    from apt.models import load_model
    from apt.provenance import environment

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or str(ROOT / f"results/benchmarks/sparse_speed_{args.device}.json")
    dtype_name = args.dtype or ("float16" if args.device == "cuda" else "float32")
    result = {"benchmark": "sparse_speed", "device": args.device, "dtype": dtype_name,
              "settings": {"pruned": args.pruned, "random": args.random, "layers": args.layers,
                           "patterns": args.patterns if args.random else None, "tokens": args.tokens, "decode": args.decode,
                           "repeats": args.repeats, "threads": torch.get_num_threads()},
              "checkpoints": {}}
    if args.device == "cuda" and not torch.cuda.is_available():
        msg = "no CUDA device on this machine: the CUDA 2:4 benchmark is skipped (nothing measured)"
        print(msg)
        result["skipped"] = msg
    else:
        device = torch.device(args.device)
        dtype = getattr(torch, dtype_name)

        def sources():
            for src in map(Path, args.pruned):
                report = json.loads((src / "prune_report.json").read_text())
                yield src.name, lambda: (load_model(str(src), dtype=dtype,
                                                    device=args.device)[0], report)
            if args.random:
                for pattern in args.patterns.split(","):
                    yield (f"random-{args.random}-{pattern}",
                           lambda: random_checkpoint(args.random, args.layers, pattern, dtype,
                                                     device))

        part = cpu_part if args.device == "cpu" else cuda_part
        for tag, load in sources():
            model, report = load()
            print(f"{tag} ({report['settings']['pattern']}, {dtype_name}, {args.device})",
                  flush=True)
            result["checkpoints"][tag] = {"pattern": report["settings"]["pattern"],
                                          **part(model, report, args, device)}
            del model
    result["environment"] = environment()
    write_json_atomic(out, result)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
