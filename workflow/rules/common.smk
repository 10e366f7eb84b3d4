# Configuration checks, names and paths shared by every rule. No computation happens here:
# the rules call the `apt` command, which calls the library.
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from apt.data.assets import ASSETS, STAMP
from apt.data.sources import OFFLINE_MODEL_ASSETS
from apt.provenance import code_version, method_code_version
from apt.pruning import METHODS as LIBRARY_METHODS, parse_target


def _config_error(key, message):
    raise WorkflowError(f"Invalid config: key '{key}': {message}")


if isinstance(config.get("calibration"), dict) and "seed" in config["calibration"]:
    _config_error("calibration.seed", "the calibration draws are a list, 'calibration.seeds' "
                  "(seeds: [0] for one draw, seeds: [0, 1, 2] for three)")
validate(config, "../schemas/config.schema.yaml")


def _targets(cfg):
    """The config's patterns read by the library's parser (apt.pruning.parse_target), the one
    spelling shared with `apt prune` and the benchmarks; checks what the JSON schema cannot
    say (N < M, duplicates), naming the key."""
    targets = []
    for i, p in enumerate(cfg["patterns"]):
        try:
            targets.append(parse_target(p))
        except ValueError as exc:
            said = str(exc) if str(p) in str(exc) else f"{p!r}: {exc}"
            _config_error(f"patterns[{i}]", said)
    tokens = [t.token for t in targets]
    for i, t in enumerate(tokens):
        if tokens.index(t) != i:
            _config_error(f"patterns[{i}]", f"{cfg['patterns'][i]!r} repeats an earlier pattern")
    return targets


def _check_config(cfg):
    """What the JSON schema cannot say; same style of message, naming the key."""
    for i, d in enumerate(cfg["eval"].get("ppl", {}).get("datasets", [])):
        if d == "dense":
            _config_error(f"eval.ppl.datasets[{i}]", "'dense' is reserved")


# ---------------------------------------------------------------- names used in file paths
def pattern_flags(token):
    """The `apt prune` flags a pattern token (Target.token: u50, u62.5, 2of4) stands for."""
    t = parse_target(token)
    if t.pattern.structured:
        return f"--pattern {t.pattern_arg}"
    return f"--pattern unstructured --sparsity {t.sparsity!r}"


def _pattern_seeds(cfg, targets):
    """Pattern token -> its calibration seeds: calibration.seeds, or the pattern's entry in
    calibration.seeds_by_pattern (keys spelled as patterns are, e.g. "50%" or "2:4")."""
    calib = cfg["calibration"]
    out = {t.token: list(calib.get("seeds", [0])) for t in targets}
    for key, seeds in (calib.get("seeds_by_pattern") or {}).items():
        out[_config_pattern(cfg, key, f"calibration.seeds_by_pattern.{key}", out)] = list(seeds)
    return out


def _config_pattern(cfg, spelled, where, tokens):
    """The token of a pattern another key names (any spelling), which must be one of
    'patterns' (``tokens``); else a config error naming ``where``."""
    try:
        token = parse_target(spelled).token
    except ValueError as exc:
        _config_error(where, str(exc))
    if token not in tokens:
        _config_error(where, f"{spelled!r} is not among the patterns {cfg['patterns']}; "
                      "add it there or remove it here")
    return token


def export_step(w, output):
    """With save_format: compressed, the command that rewrites a pruned checkpoint in place in
    compressed-tensors' sparse format (apt export), appended to the prune job; else nothing."""
    if config.get("save_format", "dense") != "compressed":
        return ""
    log = f"{R}/logs/prune/{w.model}/{w.method}-{w.pattern}-s{w.seed}.log"
    return (f"&& {apt_command('export')} --model {output.ckpt} --out {output.ckpt} --force"
            f" >> {log} 2>&1")


def allocation_flags(token):
    """The `apt prune` flags of the config's allocation for a pattern token: OWL's for the
    unstructured patterns, none for N:M (always uniform) or a uniform allocation."""
    alloc = config.get("allocation") or {}
    if alloc.get("name", "uniform") != "owl" or not token.startswith("u"):
        return ""
    flags = ["--allocation owl"]
    for key, flag in (("owl_m", "--owl-m"), ("owl_lambda", "--owl-lambda")):
        if key in alloc:
            flags.append(f"{flag} {float(alloc[key])!r}")
    if "owl_spread" in alloc:
        flags.append(f"--owl-spread {alloc['owl_spread']}")
    return " ".join(flags)


TARGETS = _targets(config)
_check_config(config)

R = config["results"]
# The pipeline's assets: the repository's resources/ unless APT_RESOURCES names another folder;
# every command is given it, so that it finds them whatever its working directory.
RES = os.environ.get("APT_RESOURCES") or "resources"
MODELS = config["models"]
METHODS = config["methods"]
PATTERNS = [t.token for t in TARGETS]
CALIB = config["calibration"]
# Calibration draws per pattern token: one calibration set per seed, one pruned model per
# method, pattern and seed.
PATTERN_SEEDS = _pattern_seeds(config, TARGETS)
PPL = config["eval"].get("ppl") or {}
ZS = config["eval"].get("zeroshot") or {}
PPL_DATASETS = PPL.get("datasets", [])
ZS_TASKS = ZS.get("tasks", [])


def method_seeds(method, token):
    """The calibration seeds a method is pruned from at a pattern: all of the pattern's, but
    only the first for a method that reads no calibration (magnitude) under a uniform
    allocation, whose pruned model would be the same for every draw."""
    seeds = PATTERN_SEEDS[token]
    reads_calibration = getattr(LIBRARY_METHODS[method], "NEEDS_HESSIAN", True)
    owl = (config.get("allocation") or {}).get("name", "uniform") == "owl" and token.startswith("u")
    return seeds if reads_calibration or owl else seeds[:1]


def _zeroshot_variants(cfg, variants):
    """The variants evaluated zero-shot: every one, or those of eval.zeroshot.patterns and
    eval.zeroshot.seeds where the config names them (the dense model always)."""
    zs = cfg["eval"].get("zeroshot") or {}
    patterns, seeds = zs.get("patterns"), zs.get("seeds")
    tokens = None if patterns is None else {
        _config_pattern(cfg, p, f"eval.zeroshot.patterns[{i}]", PATTERNS)
        for i, p in enumerate(patterns)}
    out = []
    for v in variants:
        if v != "dense":
            _, token, seed = v.rsplit("-", 2)
            if (tokens is not None and token not in tokens) or (
                    seeds is not None and int(seed[1:]) not in seeds):
                continue
        out.append(v)
    return out


# "dense" (once per model: it does not depend on the calibration) or "<method>-<pattern>-s<seed>"
VARIANTS = (["dense"] if config["dense"] else []) + [
    f"{m}-{p}-s{s}" for m in METHODS for p in PATTERNS for s in method_seeds(m, p)]
ZS_VARIANTS = _zeroshot_variants(config, VARIANTS) if ZS_TASKS else []

# The `apt` command of the Python that runs Snakemake (the project's venv), not whatever `apt`
# comes first on PATH (on Debian that is the package manager).
_venv_apt = Path(sys.executable).parent / "apt"
APT = str(_venv_apt) if _venv_apt.exists() else "apt"
CUDA = config["device"] == "cuda"
# On CUDA every model job runs through the slot allocator, which sets CUDA_VISIBLE_DEVICES.
GPU_RUN = f"{sys.executable} -m apt.gpu --" if CUDA else ""
DEVICE = "cuda" if CUDA else "cpu"
ENV = "../envs/apt.yaml"   # relative to the rule files


def apt_command(sub, model_job=False):
    """The command line that starts `apt <sub>`; model jobs go through the GPU allocator on CUDA."""
    prefix = GPU_RUN if model_job else ""
    return f"APT_RESOURCES={shlex.quote(str(Path(RES).resolve()))} {prefix} {APT} {sub}"


# Library versions, passed as params of the model jobs, so that Snakemake reruns a job whose
# code changed (see apt.provenance.code_version). A prune job's version covers only its own
# method's solver modules beside the shared code: an edit of APT's search reruns APT's jobs,
# not SparseGPT's (apt.provenance.method_code_version).
SHARED_CODE = ("models", "data", "provenance.py", "io.py")
PRUNE_CODE = {m: method_code_version(m, "engine", "commands/prune.py", *SHARED_CODE)
              for m in LIBRARY_METHODS}
EVAL_CODE = code_version("eval", "commands/eval.py", *SHARED_CODE)
# On SLURM (profiles/slurm) GPU jobs go to the profile's gpu_partition; a CPU config sends
# every job to the default partition.
GPU_RESOURCES = ({"gpu": 1, **({"slurm_partition": config["gpu_partition"]}
                               if config["gpu_partition"] else {})} if CUDA else {})
THREADS = config["threads"]
# (Model jobs set OMP_NUM_THREADS={threads}: torch would otherwise use every core.)

# Offline assets (apt assets): names that the commands resolve to files under resources/.
OFFLINE = {**OFFLINE_MODEL_ASSETS, "wiki": "texts", "c4-sample": "texts"}
ASSET_DIRS = {name: a.path for name, a in ASSETS.items()}


def asset_stamp(asset):
    """The stamp written last into a finished asset folder: the asset rule's output."""
    return f"{RES}/{ASSET_DIRS[asset]}/{STAMP}"


def _source_inputs(source, kind):
    if source in OFFLINE:
        return [asset_stamp(OFFLINE[source])]
    p = Path(source)
    if kind == "model" and (p / "config.json").is_file():
        return [str(p / "config.json")]
    if kind == "dataset" and p.is_file():
        return [str(p)]
    return []   # a hub id or a hub dataset: fetched by the command itself


def model_source(model):
    return MODELS[model]["source"]


def dataset_source(name):
    return config["datasets"].get(name, name)


def model_inputs(model):
    return _source_inputs(model_source(model), "model")


def dataset_inputs(name):
    return _source_inputs(dataset_source(name), "dataset")


def dtype_flag(model):
    dtype = MODELS[model].get("dtype") or config.get("dtype")
    return f"--dtype {dtype}" if dtype else ""


def eval_seqlen(model):
    return MODELS[model].get("seqlen", PPL.get("seqlen"))


def calib_seqlen(model):
    return MODELS[model].get("calib_seqlen", CALIB["seqlen"])


# ---------------------------------------------------------------- result paths
def calib_file(model, seed):
    return (f"{R}/calib/{model}/{CALIB['dataset']}-n{CALIB['nsamples']}"
            f"-l{calib_seqlen(model)}-s{seed}.pt")


def variant_model(wildcards):
    """What `apt eval --model` gets: the source for the dense model, else the checkpoint."""
    if wildcards.variant == "dense":
        return model_source(wildcards.model)
    return f"{R}/models/{wildcards.model}/{wildcards.variant}"


def variant_inputs(wildcards):
    if wildcards.variant == "dense":
        return model_inputs(wildcards.model)
    return [f"{R}/models/{wildcards.model}/{wildcards.variant}"]


def metric_files():
    """Every metrics JSON the report aggregates, as the config asks for them."""
    files = []
    for model in MODELS:
        for variant in VARIANTS:
            base = f"{R}/metrics/{model}/{variant}"
            if variant != "dense":
                files.append(f"{base}/prune.json")
            files += [f"{base}/ppl-{d}.json" for d in PPL_DATASETS]
            if variant in ZS_VARIANTS:
                files.append(f"{base}/zeroshot.json")
    return files


# The cost table needs a pruned model; the gap table (APT's share of the SparseGPT-to-dense
# perplexity gap) needs all three.
GAP = bool(PPL_DATASETS) and config["dense"] and {"sparsegpt", "apt"} <= set(METHODS)


def _zeroshot_diff(zs_variants):
    """Whether the zero-shot differences table has a row: an APT variant evaluated zero-shot
    and the dense model, or another method at its pattern from a seed APT also has."""
    if "dense" in zs_variants:
        return any(v.startswith("apt-") for v in zs_variants)
    pruned = [v.rsplit("-", 2) for v in zs_variants if v != "dense"]
    apt = {(token, seed) for method, token, seed in pruned if method == "apt"}
    return any(method != "apt" and (token, seed) in apt for method, token, seed in pruned)


ZS_DIFF = bool(ZS_TASKS) and _zeroshot_diff(ZS_VARIANTS)
TABLES = [
    f"{R}/tables/{kind}.{ext}"
    for kind, wanted in (("ppl", PPL_DATASETS), ("zeroshot", ZS_TASKS), ("gap", GAP),
                         ("zeroshot-diff", ZS_DIFF), ("cost", any(v != "dense" for v in VARIANTS)))
    if wanted
    for ext in ("md", "csv", "tex")
]


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    method=r"[a-z0-9_]+",
    pattern=r"u\d+(?:\.\d+)?|\d+of\d+",
    variant=r"dense|[a-z0-9_]+-(?:u\d+(?:\.\d+)?|\d+of\d+)-s\d+",
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    nsamples=r"\d+",
    seqlen=r"\d+",
    seed=r"\d+",


# Under the SLURM executor: refuse a cluster where the plugin could not follow its jobs (the
# run would wait forever), name the risky ones (apt.cluster).
onstart:
    plugin = workflow.executor_plugin
    if plugin is not None and plugin.name == "slurm":
        from apt.cluster import check_job_tracking, sacct_probe, scontrol_show_config
        from apt.errors import AptError

        settings = workflow.executor_settings
        try:
            for warning in check_job_tracking(settings.status_command,
                                              settings.init_seconds_before_status_checks,
                                              scontrol_show_config(), sacct_probe):
                print(f"Warning: {warning}", file=sys.stderr)
        except AptError as exc:
            raise WorkflowError(str(exc))
