"""The Snakemake workflow without running models: DAGs of both configs, profiles, lint, config
validation and GPU slots under Snakemake's scheduler. Each run works in a fresh temp folder."""

import itertools
import json
import subprocess
import sys

import jsonschema
import pytest
import yaml

from workflow_util import (ROOT, SNAKEMAKE, env, job_counts, load_config, planned_outputs,
                           snakemake, write_config)

SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _expected_counts(cfg):
    """Jobs a config asks for in an empty folder, from its own lists."""
    n_models = len(cfg["models"])
    seeds = len(cfg["calibration"].get("seeds", [0]))
    # magnitude reads no calibration: one pruned model per pattern, whatever the seeds
    reading = [m for m in cfg["methods"] if m != "magnitude"]
    pruned = len(cfg["patterns"]) * (len(reading) * seeds + ("magnitude" in cfg["methods"]))
    variants = pruned + (1 if cfg.get("dense", True) else 0)   # dense: once, whatever the seeds
    ppl = cfg["eval"].get("ppl", {}).get("datasets", [])
    tasks = cfg["eval"].get("zeroshot", {}).get("tasks", [])
    return {"calib": n_models * seeds,   # one calibration set per model and seed
            "prune": n_models * pruned,
            "ppl": n_models * variants * len(ppl),
            "zeroshot": n_models * variants if tasks else 0,
            "report": 1, "all": 1}


def _check_dag(out, name):
    counts = job_counts(out)
    want = {k: v for k, v in _expected_counts(load_config(name)).items() if v}
    assert {k: counts.get(k, 0) for k in want} == want
    outputs = planned_outputs(out)
    # no prune job for the dense reference, which is evaluated once per model
    assert not any("/models/" in f and "dense" in f for f in outputs)
    first = load_config(name)["eval"]["ppl"]["datasets"][0]
    assert any(f.endswith(f"/dense/ppl-{first}.json") for f in outputs)


def test_default_config_dry_runs_on_cpu_without_gpu_resources(tmp_path):
    res = snakemake(tmp_path, "-n", "--cores", "2", "-p",
                    configfile=ROOT / "config" / "config.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    _check_dag(res.stdout + res.stderr, "config.yaml")
    assert "gpu=" not in res.stdout and "apt.gpu" not in res.stdout


def test_three_seeds_plan_one_calibration_and_checkpoint_per_seed_one_dense_eval(tmp_path):
    cfg = load_config("config.yaml")
    cfg["calibration"]["seeds"] = [0, 1, 2]
    cfg["patterns"] = [0.5]
    res = snakemake(tmp_path, "-n", "--cores", "2", "-p",
                    configfile=write_config(tmp_path / "seeds.yaml", cfg))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    counts = job_counts(out)
    # wanda, sparsegpt and apt once per seed; magnitude, which reads no calibration, once
    assert {k: counts.get(k, 0) for k in ("calib", "prune", "ppl", "zeroshot")} == {
        "calib": 3, "prune": 3 * 3 + 1, "ppl": (3 * 3 + 1 + 1) * 2, "zeroshot": 3 * 3 + 1 + 1}
    assert "results/models/smollm2-135m/magnitude-u50-s0" in planned_outputs(out)
    assert "results/models/smollm2-135m/magnitude-u50-s1" not in planned_outputs(out)
    planned = planned_outputs(out)
    calib = sorted(f for f in planned if "/calib/" in f)
    assert calib == [f"results/calib/smollm2-135m/c4-sample-n16-l512-s{s}.pt" for s in range(3)]
    for s in range(3):
        assert f"results/models/smollm2-135m/apt-u50-s{s}" in planned
        assert f"results/metrics/smollm2-135m/apt-u50-s{s}/ppl-wiki.json" in planned
    dense = [f for f in planned if "/dense/" in f]
    assert sorted(dense) == ["results/metrics/smollm2-135m/dense/ppl-c4-sample.json",
                             "results/metrics/smollm2-135m/dense/ppl-wiki.json",
                             "results/metrics/smollm2-135m/dense/zeroshot.json"]
    # each prune job reads its own draw and seeds its solvers with it
    jobs = [b for b in out.split("\nrule ") if b.startswith("prune:")]
    for b in jobs:
        seed = b.split("seed=")[1].split()[0].rstrip(",")
        assert f"-s{seed}.pt --nsamples 16 --seed {seed} " in b
    assert "results/tables/gap.md" in planned   # sparsegpt, apt and dense are all there
    assert "results/tables/zeroshot-diff.md" in planned


def test_seeds_by_pattern_gives_some_patterns_more_draws(tmp_path):
    cfg = load_config("compare.yaml")
    cfg["calibration"]["seeds"] = [0]
    cfg["calibration"]["seeds_by_pattern"] = {"50%": [0, 1, 2], "2of4": [1]}   # any spelling
    res = snakemake(tmp_path, "-n", "--cores", "2", configfile=write_config(tmp_path / "s.yaml", cfg))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    root = f"{cfg['results']}/models/smollm2-135m"
    planned = {f for f in planned_outputs(out) if f.startswith(root)}
    want = {"u50-s0", "u50-s1", "u50-s2", "2of4-s1", "4of8-s0", "u70-s0"}
    assert planned == {f"{root}/{m}-{w}" for m in ("sparsegpt", "apt") for w in want}
    assert job_counts(out)["calib"] == 3   # seeds 0, 1 and 2 are each drawn once


def test_compare_config_is_the_e2e_benchmark_setting_as_a_dag(tmp_path):
    cfg = load_config("compare.yaml")
    assert cfg["calibration"] == {"dataset": "c4-sample", "nsamples": 16, "seqlen": 512,
                                  "seeds": [0, 1, 2]}
    assert cfg["methods"] == ["sparsegpt", "apt"] and cfg["patterns"] == [0.5, "2:4", "4:8", 0.7]
    assert cfg["eval"]["ppl"] == {"datasets": ["wiki", "c4-sample"], "seqlen": 512, "max_windows": 32}
    assert cfg["results"] != "results"   # its own output folder, ignored by git
    probe = ROOT / cfg["results"] / "tables" / "gap.md"
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(probe)])
    assert ignored.returncode == 0, f"{probe} is not ignored by git"
    res = snakemake(tmp_path, "-n", "--cores", "2", "-p",
                    configfile=ROOT / "config" / "compare.yaml")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    _check_dag(out, "compare.yaml")
    assert job_counts(out)["calib"] == 3 and job_counts(out)["prune"] == 24
    assert f"{cfg['results']}/tables/gap.md" in planned_outputs(out)
    assert "--max-windows 32" in out


def _pattern_seeds(cfg):
    """Pattern as spelled in the config -> its seeds (seeds_by_pattern keys spelled the same)."""
    by = cfg["calibration"].get("seeds_by_pattern", {})
    spell = {0.5: "50%", 0.6: "60%", 0.7: "70%", 0.8: "80%"}
    return {p: by.get(spell.get(p, p), cfg["calibration"]["seeds"]) for p in cfg["patterns"]}


def test_offline_paper_config_prunes_magnitude_once_and_evaluates_zero_shot_on_its_subset(tmp_path):
    cfg = load_config("offline-paper.yaml")
    res = snakemake(tmp_path, "-n", "--cores", "2",
                    configfile=ROOT / "config" / "offline-paper.yaml")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    seeds = _pattern_seeds(cfg)
    models = list(cfg["models"])
    reading = [m for m in cfg["methods"] if m != "magnitude"]
    per_model = sum(len(s) for s in seeds.values()) * len(reading) + len(cfg["patterns"])
    counts = job_counts(out)
    assert counts["prune"] == len(models) * per_model
    assert counts["ppl"] == len(models) * (per_model + 1) * len(cfg["eval"]["ppl"]["datasets"])
    assert counts["calib"] == len(models) * len({s for v in seeds.values() for s in v})
    planned = planned_outputs(out)
    root = f"{cfg['results']}/models/{models[0]}"
    magnitude = sorted(f.rsplit("/", 1)[1] for f in planned if f.startswith(f"{root}/magnitude-"))
    assert magnitude == sorted(f"magnitude-{t}-s0" for t in
                               ("u50", "u60", "u70", "u80", "2of4", "4of8"))
    assert f"{root}/apt-u50-s2" in planned and f"{root}/apt-u80-s2" in planned
    zeroshot = {f.split("/")[-2] for f in planned if f.endswith("/zeroshot.json")
                and f"/{models[0]}/" in f}
    assert zeroshot == {"dense"} | {f"{m}-{t}-s0" for m in cfg["methods"] for t in ("u50", "2of4")}
    assert counts["zeroshot"] == len(models) * len(zeroshot)
    assert cfg["eval"]["zeroshot"]["limit"] >= 400 and len(cfg["eval"]["zeroshot"]["tasks"]) >= 4
    assert f"{cfg['results']}/tables/zeroshot-diff.md" in planned


@pytest.mark.parametrize("methods, dense, zeroshot_seeds, wanted", [
    (["wanda", "apt"], False, None, True),     # wanda at APT's pattern and seed
    (["wanda", "sparsegpt"], True, None, False),   # no APT
    (["apt"], False, None, False),             # APT alone: nothing to compare with
    (["magnitude", "apt"], False, [1], False),   # magnitude has seed 0 only, APT's zero-shot seed 1
])
def test_zeroshot_diff_table_is_planned_when_apt_has_a_model_to_compare_with(
        tmp_path, methods, dense, zeroshot_seeds, wanted):
    cfg = load_config("config.yaml")
    cfg.update(methods=methods, dense=dense)
    cfg["calibration"]["seeds"] = [0, 1]
    if zeroshot_seeds is not None:
        cfg["eval"]["zeroshot"]["seeds"] = zeroshot_seeds
    res = snakemake(tmp_path, "-n", "--cores", "2", configfile=write_config(tmp_path / "z.yaml", cfg))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    planned = planned_outputs(out)
    assert ("results/tables/zeroshot-diff.md" in planned) == wanted
    assert "results/tables/zeroshot.md" in planned


def test_magnitude_under_owl_reads_the_calibration_and_gets_every_seed(tmp_path):
    cfg = load_config("config.yaml")
    cfg["calibration"]["seeds"] = [0, 1]
    cfg["patterns"] = [0.5, "2:4"]
    cfg["allocation"] = {"name": "owl"}
    res = snakemake(tmp_path, "-n", "--cores", "2", configfile=write_config(tmp_path / "o.yaml", cfg))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    planned = set(planned_outputs(out))
    root = "results/models/smollm2-135m"
    # OWL's outlier ratios come from the calibration draw; N:M is pruned uniformly
    assert {f"{root}/magnitude-u50-s0", f"{root}/magnitude-u50-s1"} <= planned
    assert f"{root}/magnitude-2of4-s0" in planned and f"{root}/magnitude-2of4-s1" not in planned


@pytest.mark.parametrize("profile", ["slurm", "local"])
def test_profiles_dry_run(tmp_path, profile):
    res = snakemake(tmp_path, "-n", "-p", "--profile", str(ROOT / "profiles" / profile),
                    configfile=ROOT / "config" / "paper.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    _check_dag(out, "paper.yaml")
    # paper config is on CUDA: every model job holds one GPU and runs through the slot allocator
    prune_jobs = [b for b in out.split("\nrule ") if b.startswith("prune:")]
    assert prune_jobs and all("gpu=1" in b for b in prune_jobs)
    assert "-m apt.gpu -- " in out
    if profile == "slurm":
        assert all("slurm_partition=gpu" in b for b in prune_jobs)


def test_slurm_profile_keeps_a_cpu_config_off_the_gpu_partition_and_its_threads(tmp_path):
    cfg = load_config("config.yaml")
    cfg["threads"] = 3
    # (a dry run caps threads at --cores, 1 unless given; a SLURM run does not)
    res = snakemake(tmp_path, "-n", "-p", "--cores", "64", "--profile",
                    str(ROOT / "profiles" / "slurm"),
                    configfile=write_config(tmp_path / "cpu.yaml", cfg))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    jobs = [b for b in out.split("\nrule ") if b.split(":")[0] in ("calib", "prune", "ppl",
                                                                    "zeroshot")]
    assert jobs and all("slurm_partition=cpu" in b for b in jobs)
    assert "slurm_partition=gpu" not in out and "gpu=" not in out
    model_jobs = [b for b in jobs if not b.startswith("calib:")]
    assert model_jobs and all("OMP_NUM_THREADS=3 " in b for b in model_jobs)


def test_lint_reports_nothing(tmp_path):
    res = snakemake(tmp_path, "--lint", configfile=ROOT / "config" / "config.yaml")
    assert res.returncode == 0
    assert "Lints for" not in res.stdout + res.stderr


def _bad(cfg_changes):
    cfg = load_config("config.yaml")
    for dotted, value in cfg_changes.items():
        node = cfg
        *path, last = dotted.split(".")
        for k in path:
            node = node[k]
        node[last] = value
    return cfg


@pytest.mark.parametrize("changes, must_name", [
    ({"methods": ["wanda", "optimal_brain_surgeon"]}, ["methods", "optimal_brain_surgeon"]),
    ({"patterns": [0.5, "3:2"]}, ["patterns[1]", "3:2", "0 < N < M"]),
    ({"patterns": [0.5, "50%"]}, ["patterns[1]", "50%", "repeats"]),   # one parser, one token
    ({"patterns": ["150%"]}, ["patterns[0]", "150%"]),
    ({"calibration.seeds": [0, -1]}, ["'calibration'", "'seeds'", "-1"]),
    ({"calibration.seeds": 3}, ["'calibration'", "'seeds'", "is not of type 'array'"]),
    ({"calibration.seed": 0}, ["calibration.seed", "calibration.seeds", "seeds: [0, 1, 2]"]),
    ({"calibration.seeds_by_pattern": {"3:4": [1]}},
     ["calibration.seeds_by_pattern.3:4", "not among the patterns"]),
    ({"eval.zeroshot.patterns": ["4:8"]}, ["eval.zeroshot.patterns[0]", "not among the patterns"]),
])
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, changes, must_name):
    cfg = write_config(tmp_path / "bad.yaml", _bad(changes))
    res = snakemake(tmp_path, "-n", "--cores", "1", configfile=cfg)
    assert res.returncode != 0
    err = res.stdout + res.stderr
    assert "Job stats" not in err
    for text in must_name:
        assert text in err, err[-2000:]


@pytest.mark.parametrize("changes, path", [
    ({"patterns": [1.5]}, ["patterns", 0]),
    ({"patterns": ["2:x"]}, ["patterns", 0]),
    ({"device": "tpu"}, ["device"]),
    ({"eval.zeroshot.tasks": ["mmlu"]}, ["eval", "zeroshot", "tasks", 0]),
    ({"models": {"bad/name": {"source": "x"}}}, ["models"]),
    ({"calibration.nsamples": 0}, ["calibration", "nsamples"]),
    ({"calibration.nsample": 4}, ["calibration"]),   # unknown key (typo)
    ({"calibration.seeds": [0, -1]}, ["calibration", "seeds", 1]),
    ({"calibration.seeds": [1, 1]}, ["calibration", "seeds"]),
    ({"calibration.seeds": []}, ["calibration", "seeds"]),
    ({"calibration.seeds": 0}, ["calibration", "seeds"]),
    ({"calibration.seeds_by_pattern": {"2:4": [-2]}}, ["calibration", "seeds_by_pattern", "2:4", 0]),
])
def test_schema_rejects_and_locates(changes, path):
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(_bad(changes)))
    assert errors
    assert any(list(e.absolute_path) == path for e in errors), [list(e.absolute_path) for e in errors]


def test_both_configs_pass_the_schema_and_methods_match_the_library():
    for name in ("config.yaml", "paper.yaml", "compare.yaml", "offline-paper.yaml",
                 "offline-paper-owl.yaml"):
        jsonschema.validate(load_config(name), SCHEMA)
    from apt.pruning import METHODS

    assert set(SCHEMA["properties"]["methods"]["items"]["enum"]) == set(METHODS)


_GPU_SNAKEFILE = """
rule all:
    input: expand("dev{{i}}.txt", i=range(4))

rule job:
    output: "dev{{i}}.txt"
    resources: gpu=1
    shell: "{py} -m apt.gpu --lock-dir locks -- sh -c 'echo $CUDA_VISIBLE_DEVICES > {{output}}.tmp; sleep 2; mv {{output}}.tmp {{output}}'"
"""


def test_four_concurrent_gpu_jobs_under_snakemake_get_four_devices(tmp_path):
    """--resources gpu=4 lets four jobs run at once; apt.gpu gives each its own device."""
    sf = tmp_path / "Snakefile"
    sf.write_text(_GPU_SNAKEFILE.format(py=sys.executable))
    e = env()
    e["APT_NUM_GPUS"] = "4"
    res = subprocess.run([SNAKEMAKE, "-s", str(sf), "-d", str(tmp_path), "--cores", "4",
                          "--resources", "gpu=4"], capture_output=True, text=True, env=e,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    devices = sorted((tmp_path / f"dev{i}.txt").read_text().strip() for i in range(4))
    assert devices == ["0", "1", "2", "3"]


def test_a_fresh_clone_plans_every_job_of_the_default_config(tmp_path):
    """Nothing the pipeline makes is committed: in a clone of the repository the default
    config's dry run plans the whole DAG (the published figures live in docs/results/)."""
    clone = tmp_path / "clone"
    res = subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=clone, capture_output=True,
                             text=True).stdout.split()
    dry = snakemake(clone, "-n", "--cores", "2", snakefile=clone / "Snakefile",
                    configfile=clone / "config" / "config.yaml")
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    assert "Nothing to be done" not in out
    _check_dag(out, "config.yaml")
    planned = planned_outputs(out)
    assert "results/tables/ppl.md" in planned and "results/metrics.json" in planned
    assert not set(planned) & set(tracked)


@pytest.mark.parametrize("fmt", ["dense", "compressed"])
def test_save_format_compressed_exports_each_checkpoint_after_pruning(tmp_path, fmt):
    cfg = load_config("config.yaml")
    cfg["save_format"] = fmt
    res = snakemake(tmp_path, "-n", "--cores", "2", "-p",
                    configfile=write_config(tmp_path / "c.yaml", cfg))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    prunes = [line for line in out.splitlines() if " prune --model" in line]
    assert prunes
    for line in prunes:
        assert (" export --model " in line) == (fmt == "compressed"), line
    if fmt == "compressed":
        assert all("--force" in line.split(" export ")[1] for line in prunes)


def test_save_format_is_checked_by_the_schema(tmp_path):
    cfg = load_config("config.yaml")
    cfg["save_format"] = "zip"
    res = snakemake(tmp_path, "-n", "--cores", "2", configfile=write_config(tmp_path / "c.yaml", cfg))
    assert res.returncode != 0 and "save_format" in res.stdout + res.stderr


def test_apt_previous_configs_prune_with_the_previous_setting_beside_the_offline_paper_draws(tmp_path):
    """config/apt-previous.yaml (N:M) and its overlay for 70 %: APT alone, with the options that
    restore AptOptions.PREVIOUS_DEFAULTS where today's per-pattern default differs, on the
    offline paper run's calibration draws and windows, each run in its own ignored folder."""
    from apt.pruning.apt_options import AptOptions

    base, paper = load_config("apt-previous.yaml"), load_config("offline-paper.yaml")
    high = yaml.safe_load((ROOT / "config" / "apt-previous-high.yaml").read_text())
    for key in ("dataset", "nsamples", "seqlen"):
        assert base["calibration"][key] == paper["calibration"][key]
    assert base["eval"]["ppl"] == paper["eval"]["ppl"]
    assert all(base["models"][m] == paper["models"][m] for m in base["models"])
    # variant names carry no options: sharing the paper run's folder would overwrite its APT jobs
    assert len({base["results"], high["results"], paper["results"]}) == 3
    for cfg, family in ((base, "nm"), ({**base, **high}, "high")):
        paper_seeds = _pattern_seeds({**paper, "patterns": cfg["patterns"]})
        assert all(s == cfg["calibration"]["seeds"] for s in paper_seeds.values())
        words = cfg["method_args"]["apt"].split()
        assert words[::2] == ["--option"] * (len(words) // 2)
        given = {k: yaml.safe_load(v) for k, v in (w.split("=") for w in words[1::2])}
        previous, default = AptOptions.PREVIOUS_DEFAULTS, AptOptions.PATTERN_DEFAULTS[family]
        assert given and given == {k: v for k, v in previous.items() if v != default[k]}
    res = snakemake(tmp_path, "-n", "--cores", "2", "-p",
                    configfile=ROOT / "config" / "apt-previous.yaml")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert job_counts(out)["prune"] == 2 * 3
    assert out.count("--option admm_ramp=8 --option admm_rho=1.5") >= 6
    res = snakemake(tmp_path / "h", "-n", "--cores", "2", "-p",
                    configfile=[ROOT / "config" / "apt-previous.yaml",
                                ROOT / "config" / "apt-previous-high.yaml"])
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert job_counts(out)["prune"] == 3
    assert "--sparsity 0.7" in out and "--option admm_ramp=8 --out" in out
    for name in (base["results"], high["results"]):
        probe = ROOT / name / "metrics" / "x.json"
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(probe)])
        assert ignored.returncode == 0, f"{probe} is not ignored by git"
