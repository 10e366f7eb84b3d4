"""Time and memory of the pruning engine on randomly initialised models of real shapes.

Builds a LLaMA-architecture model with the shapes of SmolLM2-135M (``--shape smollm2``, all 30
blocks) or of LLaMA-7B (``--shape llama7b``, hidden 4096, MLP 11008, 32 heads; ``--layers``
blocks of its 32), random weights (seed 0) and random calibration tokens, and prunes it with
:func:`apt.engine.prune_model` for each method and pattern, from a fresh copy each time. Records
the engine's own timings (capture, total, solver time summed over the matrices, the mean solver
time per matrix kind) and the peak memory (the process's RSS; on CUDA the peak allocated device
memory of that run).

Random weights make the layer errors meaningless (they are recorded only as a sanity check);
what this measures is the time and memory, which depend on the shapes, the number of
calibration tokens and the device. Used where the real models are not at hand (the GPU machine
of a session cannot reach the model hub or the offline assets).

    .venv/bin/python -m benchmarks.engine_random --shape llama7b --layers 2 --nsamples 128 --seqlen 2048 \
        --methods sparsegpt,apt --patterns 0.5,2:4 --device cuda --dtype bfloat16 \
        [--out results/benchmarks/engine_random.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from typing import Any

import torch

from apt.engine import PruneSettings, prune_model
from apt.models import adapter_for
from apt.pruning import prune_matrix
from benchmarks.common import command, key_values, name_list, targets, write_report

SHAPES = {
    # SmolLM2-135M's config (HuggingFaceTB/SmolLM2-135M)
    "smollm2": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True),
    # LLaMA-7B's config (meta-llama/Llama-2-7b-hf)
    "llama7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                    max_position_embeddings=4096, tie_word_embeddings=False),
}


def build_model(shape: str, layers: int | None, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(SHAPES[shape])
    if layers:
        cfg["num_hidden_layers"] = layers
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).to(dtype).eval()
    return model, cfg


def per_kind(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean solver time and shape per matrix kind (q_proj, ..., down_proj)."""
    times: dict[str, list[float]] = defaultdict(list)
    shapes: dict[str, list[int]] = {}
    for r in records:
        kind = r["name"].rsplit(".", 1)[-1]
        times[kind].append(r["time_s"])
        shapes[kind] = r["shape"]
    return {k: {"shape": shapes[k], "mean_time_s": sum(v) / len(v), "count": len(v)}
            for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2")
    ap.add_argument("--layers", type=int, default=None, help="blocks (default: all of the shape)")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--methods", default="sparsegpt,apt")
    ap.add_argument("--patterns", default="0.5,2:4")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                    help="option of APT's prune (VALUE read as YAML), e.g. refit=false")
    ap.add_argument("--out", default="results/benchmarks/engine_random.json")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    options = key_values(args.opt)
    methods, patterns = name_list(args.methods), targets(args.patterns)
    t0 = time.perf_counter()
    model, cfg = build_model(args.shape, args.layers, dtype)
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    adapter = adapter_for(model)
    ids = torch.randint(0, cfg["vocab_size"], (args.nsamples, args.seqlen),
                        generator=torch.Generator().manual_seed(0))
    print(f"built {args.shape} with {cfg['num_hidden_layers']} blocks in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    if device.type == "cuda":       # untimed: library handles, kernels' first load
        w, h = torch.randn(64, 128, device=device), torch.eye(128, device=device)
        for method in methods:
            for target in patterns:
                prune_matrix(w, h, method, sparsity=target.sparsity, pattern=target.pattern_arg)
    runs = []
    for method in methods:
        for target in patterns:
            model.load_state_dict(dense)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            settings = PruneSettings(method=method, sparsity=target.sparsity,
                                     pattern=target.pattern_arg,
                                     options=dict(options) if method == "apt" else {})
            report, hidden = prune_model(model, adapter, ids, settings, device=device,
                                         progress=False)
            del hidden
            run = {"method": method, "pattern": target.label, "time_s": report["time_s"],
                   "solver_time_s": report["totals"]["solver_time_s"],
                   "matrices": report["totals"]["modules"],
                   "sparsity": report["totals"]["sparsity"],
                   "mean_rel_error_random_weights": report["totals"]["mean_rel_error"],
                   "memory": report["memory"], "per_matrix_kind": per_kind(report["modules"])}
            runs.append(run)
            print(json.dumps({k: run[k] for k in ("method", "pattern", "time_s",
                                                  "solver_time_s", "memory")}),
                  file=sys.stderr, flush=True)
    report = {
        "what": "time and memory of apt.engine.prune_model on a random-weight model of real "
                "shapes (errors meaningless)",
        "command": command("benchmarks.engine_random", argv),
        "settings": {"shape": args.shape, "config": cfg, "nsamples": args.nsamples,
                     "seqlen": args.seqlen, "device": str(device), "dtype": args.dtype,
                     "apt_options": options},
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "runs": runs,
        "wall_s": time.perf_counter() - t0,
    }
    write_report(args.out, report)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
