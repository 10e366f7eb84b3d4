"""`apt prune`: prune a model block by block from a calibration set; write an HF checkpoint.

Every setting is checked before the model is pruned (method, pattern, sparsity, options, device,
calibration file, model files, sequence length, calibration tokens). The output folder appears
only when complete; a work folder (``--work-dir``, default ``<out>.partial-work``) keeps each
finished block, and a rerun with the same settings resumes after the last one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from apt.commands.common import parse_device, parse_key_values
from apt.errors import AptError

HELP = "prune a model layer by layer (magnitude, wanda, sparsegpt, apt; unstructured or N:M)"

log = logging.getLogger("apt.prune")

DTYPES = ("float32", "float16", "bfloat16")


def add_arguments(parser):
    g = parser.add_argument_group("what to prune")
    g.add_argument("--model", help="model: a known name, a local HF folder or a hub id")
    g.add_argument("--method", help="pruning method (magnitude, wanda, sparsegpt, apt)")
    g.add_argument("--pattern", default="unstructured",
                   help="'unstructured' (with --sparsity), 'N:M' (e.g. 2:4) or a percentage (50%%)")
    g.add_argument("--sparsity", type=float, default=None,
                   help="fraction of weights set to zero (unstructured); implied by N:M")
    g.add_argument("--out", help="output folder (HF checkpoint + prune_report.json)")
    a = parser.add_argument_group("allocation (how the sparsity is spread over the blocks)")
    a.add_argument("--allocation", default="uniform",
                   help="'uniform' (every layer at --sparsity, the default) or 'owl' (per-block "
                        "sparsities from each block's share of outlier weights, Yin et al. "
                        "2024; unstructured only), the model's total at --sparsity exactly")
    # defaults of apt.pruning.allocation.OwlOptions (not imported here: no torch for --help)
    a.add_argument("--owl-m", type=float, default=None, metavar="M",
                   help="OWL: a weight is an outlier where its Wanda score exceeds M times its "
                        "block's mean score (default 5)")
    a.add_argument("--owl-lambda", type=float, default=None, metavar="LAMBDA",
                   help="OWL: block sparsities within --sparsity +- LAMBDA (default 0.08)")
    a.add_argument("--owl-spread", default=None, choices=("band", "authors"),
                   help="OWL: 'band' keeps every block within +- LAMBDA (the paper, default); "
                        "'authors' uses slope 2 LAMBDA as the authors' code, which can leave it")
    c = parser.add_argument_group("calibration")
    c.add_argument("--calib", default="c4-sample",
                   help="dataset name / text file (sampled here) or a .pt file from `apt calib`")
    c.add_argument("--nsamples", type=int, default=None,
                   help="calibration windows (default: all of a .pt file, else 128)")
    c.add_argument("--seqlen", type=int, default=None,
                   help="tokens per window (default: that of a .pt file, else 2048)")
    c.add_argument("--seed", type=int, default=0, help="seed of the calibration draw and solvers")
    s = parser.add_argument_group("solver")
    s.add_argument("--blocksize", type=int, default=128, help="columns per lazy-update block")
    s.add_argument("--percdamp", type=float, default=None,
                   help="damping, a multiple of mean(diag H) (default: the method's own: "
                        "sparsegpt 0.01 as its reference code; apt 3 n / T of each input's own "
                        "H[j, j] for a layer of n inputs and T calibration tokens, within "
                        "[0.05, 0.2]; --option damp_unit=mean or median for a uniform damping)")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option passed to the solver (repeatable; value parsed as YAML); "
                        "APT's are the fields of apt.pruning.apt_options.AptOptions (search, "
                        "admm_iters, admm_rho, refit, ...), each described there")
    s.add_argument("--reconstruct", default=None, choices=("layer", "dense"),
                   help="what each layer's pruned weights reproduce: 'layer', its own dense "
                        "outputs on the pruned model's inputs (SparseGPT's objective), or "
                        "'dense', the dense model's outputs, which also corrects the error of "
                        "the blocks before, its groups pruned in order (sparsegpt and apt only; "
                        "default layer for every method)")
    s.add_argument("--reconstruct-ridge", type=float, default=None, metavar="R",
                   help="with --reconstruct dense: ridge that keeps the target near the dense "
                        "weights, a multiple of each input's H[j, j] (default 0.01)")
    s.add_argument("--true-sequential", action="store_true",
                   help="prune the groups of a block one after another (q/k/v, o, mlp in, mlp out)")
    r = parser.add_argument_group("run")
    r.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    r.add_argument("--dtype", default="float32", choices=DTYPES, help="model weights dtype")
    r.add_argument("--checkpoint-every", type=int, default=1, metavar="K",
                   help="save the resumable state after every K blocks (default 1); a larger K "
                        "writes the hidden states less often, a resumed run redoes up to K-1 blocks")
    r.add_argument("--work-dir", default=None,
                   help="resumable work folder (default: <out>.partial-work)")
    r.add_argument("--no-resume", action="store_true", help="ignore a previous partial run")
    r.add_argument("--force", action="store_true", help="replace an existing output folder")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def allocation_from_args(args, structured: bool, target: float):
    """``--allocation`` and OWL's hyperparameters, checked: ``(name, OwlOptions or None)``."""
    from apt.pruning.allocation import OwlOptions, check_allocation

    try:
        check_allocation(args.allocation, structured)
    except ValueError as exc:
        raise AptError(f"--allocation: {exc}") from None
    flags = {"m": "--owl-m", "lam": "--owl-lambda", "spread": "--owl-spread"}
    given = {k: getattr(args, flags[k].lstrip("-").replace("-", "_")) for k in flags}
    given = {k: v for k, v in given.items() if v is not None}
    if args.allocation != "owl":
        if given:
            named = ", ".join(flags[k] for k in given)
            raise AptError(f"{named} set OWL's hyperparameters; add --allocation owl")
        return args.allocation, None
    try:
        owl = OwlOptions(**given)
        owl.check_target(target)
    except ValueError as exc:
        raise AptError(f"--allocation owl: {exc}") from None
    return "owl", owl


def check_solver(method: str, sparsity, pattern: str, blocksize: int, percdamp: float | None,
                 options: dict[str, Any]) -> tuple[Any, float]:
    """Method, pattern, sparsity and options, tried on a tiny matrix before any long work."""
    import torch

    from apt.pruning import METHODS, prune_matrix
    from apt.pruning.patterns import resolve

    if method not in METHODS:
        raise AptError(f"--method {method!r}: unknown; known: {', '.join(METHODS)}")
    try:
        pat, frac = resolve(sparsity, pattern)
    except ValueError as exc:
        raise AptError(f"--pattern/--sparsity: {exc}") from None
    cols = 2 * pat.m if pat.structured else 8
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, cols, generator=gen)
    x = torch.randn(4 * cols, cols, generator=gen)
    try:
        prune_matrix(w, 2 * x.t() @ x / x.shape[0], method=method, sparsity=frac,
                     pattern=str(pat), blocksize=blocksize, percdamp=percdamp, **options)
    except (TypeError, ValueError) as exc:
        raise AptError(f"--method {method} with options {options}: {exc}") from None
    return pat, frac


def load_calib_file(path: Path, nsamples: int | None, seqlen: int | None):
    """Windows of a file written by ``apt calib``; unset sizes default to the file's own."""
    import torch

    if not path.is_file():
        raise AptError(f"--calib {path}: no such file (write one with `apt calib`)")
    try:
        data = torch.load(path, weights_only=True)
    except Exception as exc:
        raise AptError(f"--calib {path}: cannot read ({type(exc).__name__}: {exc}); "
                       "write it again with `apt calib`") from None
    ids = data.get("input_ids") if isinstance(data, dict) else None
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.long:
        raise AptError(f"--calib {path}: expected a dict with 'input_ids' (LongTensor K x L)")
    nsamples = ids.shape[0] if nsamples is None else nsamples
    seqlen = ids.shape[1] if seqlen is None else seqlen
    if ids.shape[1] != seqlen:
        raise AptError(f"--calib {path}: windows of {ids.shape[1]} tokens, but --seqlen "
                       f"{seqlen}; pass --seqlen {ids.shape[1]} or write a new file")
    if ids.shape[0] < nsamples:
        raise AptError(f"--calib {path}: {ids.shape[0]} windows ({ids.numel()} tokens), fewer "
                       f"than the {nsamples} x {seqlen} asked; lower --nsamples or write a "
                       "larger file")
    return ids[:nsamples].clone(), dict(data.get("settings") or {})


def model_identity(path: str) -> dict[str, Any]:
    """What identifies the model's weights for resuming: config digest and weight-file stats."""
    p = Path(path)
    if not p.is_dir():
        return {"source": path}
    files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".bin", ".json"))
    return {"source": str(p), "files": {f.name: [f.stat().st_size, f.stat().st_mtime_ns]
                                        for f in files}}


def settings_from_args(args):
    """Every flag checked, the solver tried on a tiny matrix: the engine's PruneSettings."""
    from apt.engine import PruneSettings

    for flag in ("model", "method", "out", "calib"):
        if not getattr(args, flag, None):
            raise AptError(f"--{flag} is required")
    for flag in ("nsamples", "seqlen", "blocksize", "checkpoint_every"):
        value = getattr(args, flag)
        if value is not None and int(value) < 1:
            raise AptError(f"--{flag.replace('_', '-')} must be a positive integer; got {value}")
    if args.percdamp is not None and args.percdamp < 0:
        raise AptError(f"--percdamp must be >= 0; got {args.percdamp}")
    options = parse_key_values(args.option)
    # percdamp None: each method's own default, per layer (the value used is in each module's
    # info.percdamp_used)
    pat, frac = check_solver(args.method, args.sparsity, args.pattern, args.blocksize,
                             args.percdamp, options)
    allocation, owl = allocation_from_args(args, pat.structured, frac)
    extra = {}
    if getattr(args, "reconstruct_ridge", None) is not None:
        extra["reconstruct_ridge"] = args.reconstruct_ridge
    settings = PruneSettings(method=args.method, sparsity=frac, pattern=str(pat),
                             blocksize=args.blocksize, percdamp=args.percdamp, seed=args.seed,
                             true_sequential=True if args.true_sequential else None,
                             options=options,
                             allocation=allocation, owl=owl,
                             reconstruct=getattr(args, "reconstruct", None), **extra)
    try:
        mode = settings.resolved().reconstruct
    except ValueError as exc:
        raise AptError(f"--reconstruct: {exc}") from None
    if "reconstruct_ridge" in extra and mode != "dense":
        raise AptError("--reconstruct-ridge applies to --reconstruct dense only")
    return settings


def calibration(args, tokenizer, vocab: int, calib_ids=None, calib_settings=None):
    """The calibration windows (from the ``.pt`` file already read, or sampled here) and what
    describes them, checked against the sizes asked and the model's vocabulary."""
    if calib_ids is None:
        from apt.data.calibration import sample_calibration

        calib_ids = sample_calibration(tokenizer, args.calib, args.nsamples, args.seqlen,
                                       args.seed)
        calib_settings = {"dataset": args.calib, "nsamples": args.nsamples,
                          "seqlen": args.seqlen, "seed": args.seed}
    if tuple(calib_ids.shape) != (args.nsamples, args.seqlen):
        raise AptError(f"calibration: got {tuple(calib_ids.shape)} tokens, fewer than the "
                       f"{args.nsamples} x {args.seqlen} asked")
    if int(calib_ids.max()) >= vocab or int(calib_ids.min()) < 0:
        raise AptError(f"calibration token ids reach {int(calib_ids.max())}, outside the model's "
                       f"vocabulary of {vocab}: was it tokenized for another model?")
    return calib_ids, dict(calib_settings or {})


def check_model(adapter, model, pattern, seqlen: int) -> None:
    """The model takes windows of ``seqlen`` tokens and every prunable layer fits the pattern."""
    limit = adapter.max_positions(model.config)
    if limit is not None and seqlen > limit:
        raise AptError(f"--seqlen {seqlen} is longer than the model allows ({limit} "
                       "positions); lower --seqlen")
    if pattern.structured:
        for name, module in adapter.prunable(adapter.blocks(model)[0]).items():
            n_in = adapter.in_features(module)
            if n_in % pattern.m:
                raise AptError(f"pattern {pattern}: {name} has {n_in} inputs, not a multiple "
                               f"of {pattern.m}")


def run(args) -> int:
    import torch

    from apt.engine import WorkDir, prune_model, save_checkpoint
    from apt.engine.checkpoint import fingerprint, tensor_digest
    from apt.models import adapter_for, load_model
    from apt.pruning.patterns import parse_pattern
    from apt.provenance import code_version, environment

    settings = settings_from_args(args)
    device = parse_device(str(args.device))
    out = Path(args.out)
    if out.exists() and not args.force:
        raise AptError(f"--out {out} exists; remove it or pass --force to replace it")
    calib_ids, calib_settings = None, {}
    if str(args.calib).endswith(".pt"):
        calib_ids, calib_settings = load_calib_file(Path(args.calib), args.nsamples, args.seqlen)
        args.nsamples, args.seqlen = calib_ids.shape
    else:
        args.nsamples = 128 if args.nsamples is None else args.nsamples
        args.seqlen = 2048 if args.seqlen is None else args.seqlen

    model, tokenizer = load_model(args.model, dtype=getattr(torch, args.dtype), device="cpu",
                                  require_adapter=True)
    adapter = adapter_for(model)
    pat = parse_pattern(settings.pattern)
    check_model(adapter, model, pat, args.seqlen)
    calib_ids, calib_settings = calibration(args, tokenizer,
                                            model.get_input_embeddings().weight.shape[0],
                                            calib_ids, calib_settings)
    calib_digest = tensor_digest(calib_ids)
    model_path = str(getattr(model, "name_or_path", args.model))
    fp = fingerprint({"settings": settings.as_dict(), "model": model_identity(model_path),
                      "dtype": args.dtype, "device": str(device), "calib": calib_digest,
                      # blocks pruned by other code are not resumed
                      "code": code_version("pruning", "engine", "models")})
    work = WorkDir(args.work_dir or f"{out}.partial-work", fp, every=args.checkpoint_every)
    if args.no_resume:
        work.remove()
    torch.manual_seed(args.seed)
    log.info("pruning %s (%s, %d blocks) with %s %s (%s allocation) on %s, %d x %d "
             "calibration tokens", args.model, adapter.family, len(adapter.blocks(model)),
             args.method, pat, settings.allocation, device, args.nsamples, args.seqlen)
    report, _ = prune_model(model, adapter, calib_ids, settings, device, work_dir=work,
                            progress=not args.no_progress)
    report.update({
        "model": args.model,
        "model_path": str(getattr(model, "name_or_path", "")),
        "dtype": args.dtype,
        "calibration": {"source": str(args.calib), **calib_settings,
                        "input_ids_sha256": calib_digest},
        "seed": args.seed,
        "environment": environment(),
    })
    save_checkpoint(model, tokenizer, out, report)
    work.remove()
    t = report["totals"]
    log.info("wrote %s: %d modules, sparsity %.4f, mean relative layer error %.4g, %.1f s, "
             "peak RSS %.0f MB", out, t["modules"], t["sparsity"], t["mean_rel_error"] or 0,
             report["time_s"]["total"], report["memory"]["cpu_max_rss_mb"])
    return 0
