# Configuration checks, names and paths shared by every rule. No computation happens here:
# the rules call the `apt` command, which calls the library.
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from apt.data.assets import ASSETS, STAMP
from apt.provenance import code_version


validate(config, "../schemas/config.schema.yaml")


def _config_error(key, message):
    raise WorkflowError(f"Invalid config: key '{key}': {message}")


def _check_config(cfg):
    """What the JSON schema cannot say; same style of message, naming the key."""
    for i, p in enumerate(cfg["patterns"]):
        if isinstance(p, str):
            n, m = (int(x) for x in p.split(":"))
            if not n < m:
                _config_error(f"patterns[{i}]", f"{p!r}: an N:M pattern needs 0 < N < M "
                              "(N zeros in every M consecutive weights), e.g. '2:4' or '4:8'")
    tokens = [pattern_token(p) for p in cfg["patterns"]]
    for i, t in enumerate(tokens):
        if tokens.index(t) != i:
            _config_error(f"patterns[{i}]", f"{cfg['patterns'][i]!r} repeats an earlier pattern")
    for i, d in enumerate(cfg["eval"].get("ppl", {}).get("datasets", [])):
        if d == "dense":
            _config_error(f"eval.ppl.datasets[{i}]", "'dense' is reserved")


# ---------------------------------------------------------------- names used in file paths
def pattern_token(p):
    """0.5 -> 'u50' (unstructured 50 %), '2:4' -> '2of4': the {pattern} part of paths."""
    if isinstance(p, str):
        n, m = p.split(":")
        return f"{int(n)}of{int(m)}"
    return f"u{round(p * 100, 6):g}"


def pattern_flags(token):
    """The `apt prune` flags a pattern token stands for."""
    if token.startswith("u"):
        return f"--pattern unstructured --sparsity {float(token[1:]) / 100!r}"
    n, m = token.split("of")
    return f"--pattern {n}:{m}"


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


_check_config(config)

R = config["results"]
# The pipeline's assets: the repository's resources/ unless APT_RESOURCES names another folder;
# every command is given it, so that it finds them whatever its working directory.
RES = os.environ.get("APT_RESOURCES") or "resources"
MODELS = config["models"]
METHODS = config["methods"]
PATTERNS = [pattern_token(p) for p in config["patterns"]]
CALIB = config["calibration"]
PPL = config["eval"].get("ppl") or {}
ZS = config["eval"].get("zeroshot") or {}
PPL_DATASETS = PPL.get("datasets", [])
ZS_TASKS = ZS.get("tasks", [])
VARIANTS = (["dense"] if config["dense"] else []) + [
    f"{m}-{p}" for m in METHODS for p in PATTERNS]

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
# code changed (see apt.provenance.code_version).
SHARED_CODE = ("models", "data", "provenance.py", "io.py")
PRUNE_CODE = code_version("pruning", "engine", "commands/prune.py", *SHARED_CODE)
EVAL_CODE = code_version("eval", "commands/eval.py", *SHARED_CODE)
GPU_RESOURCES = {"gpu": 1} if CUDA else {}
THREADS = config["threads"]
# (Model jobs set OMP_NUM_THREADS={threads}: torch would otherwise use every core.)

# Offline assets (apt assets): names that the commands resolve to files under resources/.
OFFLINE = {"smollm2-135m": "model", "wiki": "texts", "c4-sample": "texts"}
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
def calib_file(model):
    return (f"{R}/calib/{model}/{CALIB['dataset']}-n{CALIB['nsamples']}"
            f"-l{calib_seqlen(model)}-s{CALIB['seed']}.pt")


def checkpoint_dir(model, method, pattern):
    return f"{R}/models/{model}/{method}-{pattern}"


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
            if ZS_TASKS:
                files.append(f"{base}/zeroshot.json")
    return files


TABLES = [
    f"{R}/tables/{kind}.{ext}"
    for kind, wanted in (("ppl", PPL_DATASETS), ("zeroshot", ZS_TASKS)) if wanted
    for ext in ("md", "csv", "tex")
]


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    method=r"[a-z0-9_]+",
    pattern=r"u\d+(?:\.\d+)?|\d+of\d+",
    variant=r"dense|[a-z0-9_]+-(?:u\d+(?:\.\d+)?|\d+of\d+)",
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    nsamples=r"\d+",
    seqlen=r"\d+",
    seed=r"\d+",
