"""The pipeline through `--profile profiles/slurm` on a real single-node SLURM (tests/slurm/setup.sh
starts slurmctld, slurmd and slurmdbd with accounting; a 2-CPU 4000 MB node with partitions cpu and
gpu and a GRES gpu on /dev/null), with a tiny random LLaMA and the small-site resource lines of
docs/pipeline.md: every non-local job is a SLURM job, a rerun submits nothing, a job cancelled with
scancel is retried, a request beyond the node fails naming the resource, and GPU jobs carry their
GPU request to SLURM and SLURM's CUDA_VISIBLE_DEVICES to apt.gpu.

Skipped only where SLURM cannot be installed (not root, no apt-get) or the machine has a SLURM
config of its own in /etc/slurm; `pytest -m "not slurm"`
leaves it out."""

from __future__ import annotations

import copy
import datetime
import fcntl
import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from workflow_util import ROOT, SNAKEFILE, SNAKEMAKE, env, job_counts, write_config

pytestmark = pytest.mark.slurm

SETUP = ROOT / "tests" / "slurm" / "setup.sh"
PROFILE = ROOT / "profiles" / "slurm"
LOCAL_RULES = {"all", "assets", "report"}
# The small-site lines of docs/pipeline.md ("Clusters (SLURM)"), for a node of 2 CPUs and 4 GB.
SMALL_SITE = ["--default-resources", "slurm_partition=cpu", "runtime=15", "mem_mb=1000",
              "--set-resources", "prune:mem_mb=1500", "ppl:mem_mb=1500", "zeroshot:mem_mb=1500"]
# Test speed only: the plugin's first status check after 5 s instead of 40 s.
FAST = ["--slurm-init-seconds-before-status-checks", "5"]


def _free_port_base() -> int:
    """A base port p with p..p+3 free on 127.0.0.1 (slurmctld, slurmd, slurmdbd, MariaDB)."""
    for base in range(16817, 30000, 7):
        try:
            for p in range(base, base + 4):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no four free ports on 127.0.0.1")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-node SLURM of its own (SLURM_CONF set for every command); stopped after."""
    lock = open("/tmp/apt-slurm-test.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)   # one test cluster at a time on a machine
    state = tmp_path_factory.mktemp("slurm")
    os.chmod(state, 0o755)
    cenv = dict(os.environ, APT_SLURM_DIR=str(state), APT_SLURM_PORT=str(_free_port_base()))
    t0 = time.monotonic()
    res = subprocess.run(["bash", str(SETUP), "start"], capture_output=True, text=True, env=cenv,
                         timeout=900)
    if res.returncode == 3:
        lock.close()
        pytest.skip(f"no test SLURM cluster here: {res.stderr.strip()}")
    if res.returncode != 0:
        subprocess.run(["bash", str(SETUP), "stop"], capture_output=True, env=cenv, timeout=120)
        pytest.fail(f"SLURM did not start:\n{res.stderr[-4000:]}")
    conf = re.search(r"^SLURM_CONF=(.+)$", res.stdout, re.M).group(1)
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "CUDA_VISIBLE_DEVICES")}
    os.environ["SLURM_CONF"] = conf
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)   # only SLURM may set it for the jobs
    print(f"SLURM up in {time.monotonic() - t0:.1f} s: {res.stderr.strip().splitlines()[-1]}")
    yield {"env": cenv, "dir": state}
    subprocess.run(["bash", str(SETUP), "stop"], capture_output=True, text=True, env=cenv,
                   timeout=120)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    lock.close()


def _slurm(*cmd: str) -> str:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=True,
                          timeout=60).stdout


def _node_mem_mb() -> int:
    return int(re.search(r"RealMemory=(\d+)", _slurm("scontrol", "show", "node")).group(1))


def _snakemake_cmd(workdir: Path, configfile: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "-s", str(SNAKEFILE), "-d", str(workdir), "--profile", str(PROFILE),
            "--configfile", str(configfile), *SMALL_SITE, *FAST, *args]


def _run(workdir, configfile, *args, timeout=900):
    res = subprocess.run(_snakemake_cmd(workdir, configfile, *args), capture_output=True,
                         text=True, env=env(), cwd=workdir, timeout=timeout)
    return res.returncode, res.stdout + res.stderr


def _run_id(out: str) -> str:
    return re.search(r"SLURM run ID: (\S+)", out).group(1)


def _since() -> str:
    """sacct's --starttime for 'the last day' (a form SLURM 20.11 and later read)."""
    return (datetime.datetime.now() - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")


def _sacct(run_id: str, settle: float = 30) -> list[dict]:
    """The SLURM jobs of one Snakemake run (its run ID is their job name), from accounting;
    waits until every job has reached a final state there."""
    deadline = time.monotonic() + settle
    while True:
        out = _slurm("sacct", "-X", "--parsable2", "--noheader", "--name", run_id,
                     "--starttime", _since(),
                     "-o", "JobIDRaw,State,Partition,Elapsed,AllocTRES%200,Comment%300")
        rows = [dict(zip(("id", "state", "partition", "elapsed", "tres", "comment"),
                         line.split("|", 5)))
                for line in out.splitlines() if line]
        if all(r["state"] not in ("PENDING", "RUNNING") for r in rows) or \
                time.monotonic() > deadline:
            return rows
        time.sleep(1)


def _rule(row: dict) -> str:
    return re.match(r"rule_([a-z]+)", row["comment"]).group(1)


def _tiny_config(model_dir, text_file, results):
    return {
        "results": str(results),
        "device": "cpu",
        "threads": 1,
        "models": {"tiny": {"source": str(model_dir)}},
        "datasets": {"tinytext": str(text_file)},
        "methods": ["magnitude", "wanda"],
        "patterns": [0.5],
        "calibration": {"dataset": "tinytext", "nsamples": 4, "seqlen": 32, "seeds": [0]},
        "eval": {"ppl": {"datasets": ["tinytext"], "seqlen": 32, "max_windows": 2}},
    }


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(cluster, tmp_path_factory, tiny_model_dir, tiny_text_file):
    """The tiny config run once through the SLURM profile, after a dry run of the same command."""
    work = tmp_path_factory.mktemp("slurm_project")
    cfg = _tiny_config(tiny_model_dir("llama"), tiny_text_file, work / "results")
    cf = write_config(work / "config.yaml", cfg)
    rc, dry = _run(work, cf, "-n")
    assert rc == 0, dry[-3000:]
    planned = job_counts(dry)
    t0 = time.monotonic()
    rc, out = _run(work, cf)
    elapsed = time.monotonic() - t0
    assert rc == 0, out[-6000:]
    print(f"first SLURM run: {elapsed:.0f} s")
    return {"work": work, "cfg": cfg, "cf": cf, "planned": planned, "out": out,
            "results": work / "results"}


def test_every_non_local_job_ran_as_a_slurm_job_and_the_tables_appear(project):
    rows = _sacct(_run_id(project["out"]))
    print("jobs:", [(r["comment"][:30], r["elapsed"]) for r in rows])
    want = {r: n for r, n in project["planned"].items() if r not in LOCAL_RULES | {"total"}}
    assert want == {"calib": 1, "prune": 2, "ppl": 3}
    ran = {}
    for r in rows:
        ran[_rule(r)] = ran.get(_rule(r), 0) + 1
    assert ran == want, rows
    assert all(r["state"] == "COMPLETED" for r in rows), rows
    # a CPU config sends nothing to the GPU partition and asks for no GPU
    assert {r["partition"] for r in rows} == {"cpu"}
    assert not any("gpu" in r["tres"] for r in rows)
    # the config's threads (1) are what each job asked for, not a profile's
    assert all("cpu=1," in r["tres"] for r in rows), rows
    md = (project["results"] / "tables" / "ppl.md").read_text().splitlines()
    assert md[0] == "| Model | Method | tiny.txt |"
    methods = [line.split("|")[2].strip() for line in md if line.startswith("| llama |")]
    assert methods == ["Dense", "Magnitude", "Wanda"]
    assert (project["results"] / "tables" / "ppl.csv").is_file()


def _all_job_ids() -> set[str]:
    return set(_slurm("sacct", "-X", "--noheader", "--starttime", _since(), "-o", "JobIDRaw")
               .split())


def test_a_second_run_submits_nothing(project):
    before = _all_job_ids()
    rc, out = _run(project["work"], project["cf"])
    assert rc == 0, out[-3000:]
    assert "Nothing to be done" in out
    assert "has been submitted with SLURM jobid" not in out
    assert _all_job_ids() == before


def _wait_running(rule: str, timeout: float = 300) -> str:
    """The SLURM id of the first job of ``rule`` seen RUNNING (squeue, polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in _slurm("squeue", "-h", "-o", "%i|%T|%k").splitlines():
            jid, state, comment = line.split("|", 2)
            if state == "RUNNING" and comment.startswith(f"rule_{rule}"):
                return jid
        time.sleep(0.2)
    raise AssertionError(f"no {rule} job ran within {timeout} s")


def test_a_job_cancelled_while_running_is_retried_and_nothing_half_written_counts(project):
    results = project["results"]
    ckpt = results / "models" / "tiny" / "wanda-u50-s0"
    before_ckpt = _digest(ckpt)
    before_csv = (results / "tables" / "ppl.csv").read_text()
    # rerun one prune job and what depends on it; cancel it once SLURM runs it
    cmd = _snakemake_cmd(project["work"], project["cf"], "--forcerun", str(ckpt))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env(), cwd=project["work"])
    try:
        jid = _wait_running("prune")
        _slurm("scancel", jid)
        out, _ = proc.communicate(timeout=600)   # the wait ends: no hang on the cancelled job
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-6000:]
    rows = _sacct(_run_id(out))
    cancelled = next(r for r in rows if r["id"] == jid)
    assert cancelled["state"].startswith("CANCELLED")
    retried = [r for r in rows if r["comment"] == cancelled["comment"] and r["id"] != jid]
    assert [r["state"] for r in retried] == ["COMPLETED"], rows
    # the retried job rewrote the same checkpoint; the tables are the uninterrupted run's
    assert _digest(ckpt).keys() == before_ckpt.keys()
    assert {k: v for k, v in _digest(ckpt).items() if k.endswith(".safetensors")} == \
        {k: v for k, v in before_ckpt.items() if k.endswith(".safetensors")}
    assert (results / "tables" / "ppl.csv").read_text() == before_csv
    rc, dry = _run(project["work"], project["cf"], "-n")
    assert rc == 0 and "Nothing to be done" in dry


def test_a_job_asking_for_more_memory_than_the_node_has_fails_naming_it(project, tmp_path):
    cfg = copy.deepcopy(project["cfg"])
    cfg["results"] = str(tmp_path / "results")
    cf = write_config(tmp_path / "config.yaml", cfg)
    too_much = 2 * _node_mem_mb()
    # (a second --set-resources replaces the first: calib asks for twice the node's memory)
    calib = next((project["results"] / "calib").rglob("*.pt"))
    target = str(tmp_path / "results" / calib.relative_to(project["results"]))
    rc, out = _run(tmp_path, cf, target, "--set-resources", f"calib:mem_mb={too_much}",
                   timeout=300)
    assert rc != 0
    assert "SLURM sbatch failed" in out and "Memory specification can not be satisfied" in out
    assert f"--mem {too_much}" in out
    assert not (tmp_path / "results" / "calib").exists() or not any(
        (tmp_path / "results" / "calib").rglob("*.pt"))


def _sbatch_calls(out: str) -> dict[str, str]:
    """The plugin's own log of its sbatch calls (--verbose), by rule."""
    calls = {}
    for m in re.finditer(r"sbatch call: (sbatch .*)", out):
        rule = re.search(r"--comment '?rule_([a-z]+)", m.group(1)).group(1)
        calls.setdefault(rule, m.group(1))
    return calls


def test_gpu_jobs_ask_slurm_for_a_gpu_and_get_its_device_even_without_accounting(
        project, cluster, tmp_path):
    """device: cuda with accounting off (slurmdbd stopped): the squeue status command still
    follows the job; prune goes to the profile's `gpu` partition with --gpus=1, and inside it
    apt.gpu runs on the device SLURM put in CUDA_VISIBLE_DEVICES (the submitting side has none).
    apt prune then fails for want of a real CUDA device: the run must end, not hang. Following
    the jobs with sacct instead is refused at start (apt.cluster)."""
    cfg = copy.deepcopy(project["cfg"])
    cfg.update(results=str(tmp_path / "results"), device="cuda", methods=["magnitude"],
               threads=2)
    cf = write_config(tmp_path / "config.yaml", cfg)
    target = str(tmp_path / "results" / "models" / "tiny" / "magnitude-u50-s0")
    # the calibration set of the first run (the same file): only the prune job runs
    calib = next((project["results"] / "calib").rglob("*.pt"))
    copy_to = tmp_path / "results" / calib.relative_to(project["results"])
    copy_to.parent.mkdir(parents=True)
    shutil.copy(calib, copy_to)
    subprocess.run(["bash", str(SETUP), "accounting", "off"], check=True, env=cluster["env"],
                   capture_output=True, timeout=120)
    try:
        assert subprocess.run(["sacct", "-X", "-n"], capture_output=True,
                              timeout=60).returncode != 0, "accounting should be off"
        # following jobs with sacct now would hang: refused at start, before any submission
        rc, refused = _run(tmp_path, cf, target, "--slurm-status-command", "sacct", timeout=300)
        assert rc != 0 and "SLURM accounting does not answer" in refused, refused[-3000:]
        assert "has been submitted with SLURM jobid" not in refused
        rc, out = _run(tmp_path, cf, target, "--retries", "0", "--verbose", timeout=600)
    finally:
        subprocess.run(["bash", str(SETUP), "accounting", "on"], check=True, env=cluster["env"],
                       capture_output=True, timeout=120)
    assert rc != 0
    calls = _sbatch_calls(out)
    assert set(calls) == {"prune"}, out[-4000:]
    assert " -p gpu" in calls["prune"] and " --gpus=1" in calls["prune"]
    assert "--cpus-per-task=2" in calls["prune"]   # the config's threads
    log = (tmp_path / "results" / "logs" / "prune" / "tiny" / "magnitude-u50-s0.log").read_text()
    assert "apt.gpu: running on GPU 0" in log, log[-2000:]
    assert not Path(target).exists()
