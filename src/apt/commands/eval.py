"""`apt eval`: perplexity (`apt eval ppl`) and zero-shot accuracy (`apt eval zeroshot`).

Each writes one metrics JSON to ``--out`` (atomically) with the figures, the counts (windows,
tokens, items), the settings and the library versions.
"""

from __future__ import annotations

import argparse
import logging

from apt.commands.common import parse_device
from apt.errors import AptError

HELP = "evaluate a model: perplexity (ppl) or zero-shot accuracy (zeroshot)"

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _limit(text: str) -> int | float:
    """A count of items per task (``200``) or, below 1, a fraction of each split (``0.1``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return int(value) if value >= 1 and value == int(value) else value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.yaml", help="read settings from a YAML file")
    p.add_argument("--model", help="(required) model folder, known model name or hub id")
    p.add_argument("--batch-size", type=_positive_int, default=1, help="windows / requests per forward")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="weights dtype (default float32)")
    p.add_argument("--out", metavar="FILE.json", help="(required) metrics file to write")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="EVALUATION")
    sub.required = True

    ppl = sub.add_parser("ppl", help="perplexity by the standard protocol (non-overlapping windows)",
                         description="Perplexity: non-overlapping windows of --seqlen tokens of the "
                         "test text, tail dropped, exp of the mean token NLL (SparseGPT/Wanda).")
    _common(ppl)
    ppl.add_argument("--dataset",
                     help="(required) wiki, c4-sample (offline), wikitext2, ptb, c4 (hub) or a .txt file")
    ppl.add_argument("--seqlen", type=_positive_int, help="(required) window length in tokens")
    ppl.add_argument("--max-windows", type=_positive_int, default=None,
                     help="evaluate only the first K windows (default: all)")
    ppl.add_argument("--no-cache", action="store_true", help="do not read/write the token cache")
    ppl.set_defaults(_parser=ppl)

    zs = sub.add_parser("zeroshot", help="zero-shot accuracy with lm-eval",
                        description="Zero-shot accuracy through lm-eval with the in-memory model.")
    _common(zs)
    zs.add_argument("--tasks",
                    help="(required) comma-separated: piqa, hellaswag, winogrande, boolq, rte, arc_easy, "
                    "arc_challenge, openbookqa, lambada_openai (or any lm-eval task with the hub)")
    zs.add_argument("--limit", type=_limit, default=None,
                    help="first N items of each task (or a fraction below 1); default all")
    zs.add_argument("--task-source", choices=("auto", "local", "hub"), default="auto",
                    help="local: our copies on the offline data (apt assets); hub: lm-eval's stock "
                    "tasks; auto (default): local if its data exists and covers every task")
    zs.add_argument("--task-data", default=None, metavar="DIR",
                    help="local task data folder (default: <resources>/tasks)")
    zs.set_defaults(_parser=zs)


def _load(args):
    import torch

    from apt.models import load_model

    device = str(parse_device(str(args.device)))
    return load_model(args.model, dtype=getattr(torch, args.dtype), device=device), device


def _settings(args, device: str, **extra) -> dict:
    keep = {k: v for k, v in vars(args).items()
            if not k.startswith("_") and k not in ("command", "eval_command", "verbose", "out")}
    keep["device"] = device
    keep.update(extra)
    return keep


def _check_dataset(name: str) -> None:
    from pathlib import Path

    from apt.data.sources import KNOWN_DATASETS

    if name not in KNOWN_DATASETS and not Path(name).is_file():
        raise AptError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS) or '(none)'}, "
                       "or a path to a text file")


def run_ppl(args) -> int:
    from apt.eval.perplexity import evaluate_perplexity
    from apt.io import write_json_atomic
    from apt.provenance import environment

    _check_dataset(args.dataset)  # before the (slow) model load
    (model, tokenizer), device = _load(args)
    res = evaluate_perplexity(model, tokenizer, args.dataset, args.seqlen,
                              batch_size=args.batch_size, max_windows=args.max_windows,
                              device=device, cache=not args.no_cache)
    out = {"evaluation": "perplexity", "model": args.model, "dataset": args.dataset,
           "ppl": res.pop("ppl"), **res,
           "settings": _settings(args, device, split="test",
                                 protocol="non-overlapping windows, tail dropped, "
                                          "exp(mean NLL of the seqlen-1 predicted tokens per window)"),
           "environment": environment()}
    write_json_atomic(args.out, out)
    log.info("ppl %s seqlen %d: %.4f over %d windows -> %s", args.dataset, args.seqlen,
             out["ppl"], out["windows"], args.out)
    print(f"ppl {out['ppl']:.4f} ({out['windows']} windows x {args.seqlen} tokens) -> {args.out}")
    return 0


def run_zeroshot(args) -> int:
    from apt.eval.zeroshot import evaluate_zeroshot, parse_tasks, resolve_tasks
    from apt.io import write_json_atomic
    from apt.provenance import environment

    names = parse_tasks(args.tasks)
    resolve_tasks(names, args.task_source, args.task_data)  # fail before loading the model
    (model, tokenizer), device = _load(args)
    res = evaluate_zeroshot(model, tokenizer, names, limit=args.limit, batch_size=args.batch_size,
                            source=args.task_source, data_dir=args.task_data)
    out = {"evaluation": "zeroshot", "model": args.model, "tasks": res["tasks"],
           "task_source": res["task_source"], "seconds": res["seconds"],
           "settings": _settings(args, device, tasks=names, num_fewshot=0,
                                 lm_eval=res["lm_eval_config"]),
           "environment": environment()}
    write_json_atomic(args.out, out)
    for name, rec in out["tasks"].items():
        norm = f"  acc_norm {rec['acc_norm']:.4f}" if "acc_norm" in rec else ""
        print(f"{name:16s} acc {rec['acc']:.4f}{norm}  (n={rec['n']})")
    print(f"-> {args.out}")
    return 0


# Required settings are checked here, not by argparse, so that they may come from --config.
_REQUIRED = {"ppl": ("model", "dataset", "seqlen", "out"), "zeroshot": ("model", "tasks", "out")}


def run(args) -> int:
    missing = [k for k in _REQUIRED.get(args.eval_command, ()) if getattr(args, k, None) in (None, "")]
    if missing:
        raise AptError("missing " + ", ".join("--" + k.replace("_", "-") for k in missing)
                       + " (on the command line or in --config)")
    if args.eval_command == "ppl":
        return run_ppl(args)
    if args.eval_command == "zeroshot":
        return run_zeroshot(args)
    raise AptError("expected `apt eval ppl ...` or `apt eval zeroshot ...`")
