"""Perplexity throughput: ``apt.eval.perplexity.perplexity`` vs a plain transformers forward loop.

Both evaluate the same non-overlapping windows with the same batch size; the plain loop is what
one would write by hand (``model(input_ids=batch, labels=batch).loss`` per batch). Runs are
interleaved (plain, ours, plain, ours, ...) so that load from other processes hits both alike,
and the medians are compared. Also checks that both give the same perplexity.

    .venv/bin/python -m benchmarks.eval_throughput [--model smollm2-135m] [--dataset wiki] [--seqlen 512]
        [--windows 4] [--batch-size 2] [--repeats 5] [--out results/benchmarks/eval_throughput.json]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys

import torch

from benchmarks.common import command, timed, write_report


def plain_loop(model, windows: torch.Tensor, batch_size: int) -> float:
    """ppl by the plain transformers loop."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, windows.shape[0], batch_size):
            batch = windows[i:i + batch_size]
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
            n = batch.shape[0] * (batch.shape[1] - 1)
            total += loss.item() * n
            count += n
    return math.exp(total / count)


def ours(model, windows: torch.Tensor, batch_size: int) -> float:
    from apt.eval.perplexity import perplexity

    return perplexity(model, windows.reshape(-1), windows.shape[1], batch_size=batch_size,
                      progress=False)["ppl"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m",
                    help="a known model name, a local folder or a hub id")
    ap.add_argument("--dataset", default="wiki")
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default="results/benchmarks/eval_throughput.json")
    args = ap.parse_args(argv)

    from apt.eval.perplexity import dataset_tokens
    from apt.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    ids = dataset_tokens(tok, args.dataset, args.seqlen)
    n = min(args.windows, ids.numel() // args.seqlen)
    windows = ids[: n * args.seqlen].view(n, args.seqlen)
    tokens = n * args.seqlen

    plain_loop(model, windows[: args.batch_size], args.batch_size)  # warm-up
    runs = {"plain": [], "ours": []}
    cpu = {"plain": [], "ours": []}
    ppls = {}
    for r in range(args.repeats):
        for name, fn in (("plain", plain_loop), ("ours", ours)):
            ppl, secs, cpu_secs = timed(lambda fn=fn: fn(model, windows, args.batch_size))
            runs[name].append(secs)
            cpu[name].append(cpu_secs)
            ppls[name] = ppl
            print(f"repeat {r} {name:5s}: {tokens / secs:8.1f} tok/s wall, "
                  f"{tokens / cpu_secs:8.1f} tok/CPU-s  ppl {ppl:.4f}", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    overhead = med["ours"] / med["plain"] - 1.0
    overhead_cpu = med_cpu["ours"] / med_cpu["plain"] - 1.0
    result = {
        "benchmark": "eval_throughput",
        "command": command("benchmarks.eval_throughput", argv),
        "what": "tokens/s of apt.eval.perplexity.perplexity vs a plain transformers loop "
                "(model(input_ids, labels).loss), same windows and batch size; interleaved runs, medians",
        "settings": {"model": args.model, "dataset": args.dataset, "seqlen": args.seqlen,
                     "windows": n, "batch_size": args.batch_size, "repeats": args.repeats,
                     "threads": torch.get_num_threads(), "dtype": "float32", "device": "cpu"},
        "tokens_per_run": tokens,
        "seconds": runs,
        "cpu_seconds": cpu,
        "tokens_per_s": {k: tokens / v for k, v in med.items()},
        "tokens_per_cpu_s": {k: tokens / v for k, v in med_cpu.items()},
        "overhead": overhead,
        "overhead_cpu": overhead_cpu,
        "overhead_below_5_percent": overhead < 0.05 and overhead_cpu < 0.05,
        "ppl": ppls,
        "ppl_rel_diff": abs(ppls["ours"] - ppls["plain"]) / ppls["plain"],
        "note": "other processes shared the 2 cores during the run; see the per-run seconds",
    }
    write_report(args.out, result)
    print(f"overhead {overhead * 100:+.2f} % wall, {overhead_cpu * 100:+.2f} % CPU (ours {result['tokens_per_s']['ours']:.1f} tok/s, "
          f"plain {result['tokens_per_s']['plain']:.1f} tok/s) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
