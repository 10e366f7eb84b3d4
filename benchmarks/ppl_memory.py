"""Peak memory of perplexity evaluation with the loss computed in slices of positions or from
the full logits, on a real model with a large vocabulary (default the offline Gemma-3-270M).

Each (seqlen, mode) runs in a fresh process, which loads the model, runs it once on 8 tokens
(so that every weight is resident), notes its peak resident set (RSS), evaluates the first ``--windows`` windows of the test text with
:func:`apt.eval.perplexity.perplexity` and notes the peak RSS: the difference is what the
evaluation added. ``sliced`` is the default path (:data:`apt.eval.perplexity.LOGIT_BUDGET`
logits at a time), ``full`` the same computation with one slice holding every position. The
per-window NLL sums of the two are recorded side by side.

    python -m benchmarks.ppl_memory --model gemma3-270m --dataset wiki --seqlens 512,2048 \\
        [--windows 1] [--out results/benchmarks/ppl_memory_gemma3.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args) -> None:
    import torch

    from apt.eval import perplexity as ppl
    from apt.models import load_model

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    ids = ppl.dataset_tokens(tok, args.dataset, args.seqlen)
    with torch.no_grad():   # page every weight in, so that what follows is the evaluation's own
        model(input_ids=ids[:8].unsqueeze(0))
    loaded = _rss_mb()
    if args.mode == "full":
        ppl.chunked_window_nlls = functools.partial(ppl.chunked_window_nlls, budget=1 << 62)
    t0 = time.perf_counter()
    res = ppl.perplexity(model, ids, args.seqlen, max_windows=args.windows, progress=False)
    print(json.dumps({"seqlen": args.seqlen, "mode": args.mode, "rss_loaded_mb": loaded,
                      "rss_peak_mb": _rss_mb(), "eval_extra_mb": _rss_mb() - loaded,
                      "seconds": time.perf_counter() - t0, "window_nll": res["window_nll"],
                      "vocab": model.get_output_embeddings().weight.shape[0]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gemma3-270m")
    p.add_argument("--dataset", default="wiki")
    p.add_argument("--seqlens", default="512,2048")
    p.add_argument("--windows", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="results/benchmarks/ppl_memory_gemma3.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seqlen", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=("sliced", "full"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    from apt.eval.perplexity import LOGIT_BUDGET
    from apt.io import write_json_atomic
    from apt.provenance import environment

    runs = []
    for seqlen in (int(s) for s in args.seqlens.split(",")):
        for mode in ("sliced", "full"):
            cmd = [sys.executable, "-m", "benchmarks.ppl_memory", "--child", "--model", args.model, "--dataset",
                   args.dataset, "--windows", str(args.windows), "--threads", str(args.threads),
                   "--seqlen", str(seqlen), "--mode", mode]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "window_nll"}), flush=True)
    result = {"benchmark": "ppl_memory", "model": args.model, "dataset": args.dataset,
              "windows": args.windows, "logit_budget": LOGIT_BUDGET, "runs": runs,
              "command": " ".join(sys.argv), "environment": environment()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
