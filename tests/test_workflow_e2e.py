"""The pipeline for real, on tiny everything, in a temp project run by `dvc repro` (which runs
Snakemake): tables appear, a rerun does nothing, a changed sparsity reruns only its jobs, a
failing job leaves nothing that looks finished."""

import copy
import csv
import json
import shutil
import subprocess

import pytest

from workflow_util import (BIN, ROOT, env, job_counts, planned_outputs, snakemake,
                           write_config)

DVC = str(BIN / "dvc")
pytestmark = pytest.mark.slow


def _tiny_config(model_dir, text_file):
    return {
        "results": "results",
        "device": "cpu",
        "threads": 1,
        "models": {"tiny": {"source": str(model_dir)}},
        "datasets": {"tinytext": str(text_file)},
        "methods": ["wanda"],
        "patterns": [0.5, "2:4"],
        "calibration": {"dataset": "tinytext", "nsamples": 4, "seqlen": 32, "seeds": [0]},
        "eval": {"ppl": {"datasets": ["tinytext"], "seqlen": 32, "max_windows": 2}},
    }


def _dvc(project, *args):
    return subprocess.run([DVC, *args], cwd=project, capture_output=True, text=True, env=env(),
                          timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir, tiny_text_file):
    """A copy of the pipeline definition with a tiny config, run once with `dvc repro`."""
    p = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "Snakefile", p)
    shutil.copy(ROOT / "dvc.yaml", p)
    shutil.copytree(ROOT / "workflow", p / "workflow")
    shutil.copytree(ROOT / "src" / "apt", p / "src" / "apt",
                    ignore=shutil.ignore_patterns("__pycache__"))
    cfg = _tiny_config(tiny_model_dir("llama"), tiny_text_file)
    write_config(p / "config" / "config.yaml", cfg)
    assert _dvc(p, "init", "--no-scm").returncode == 0
    _dvc(p, "config", "core.analytics", "false")
    res = _dvc(p, "repro")
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return p, cfg


def test_tables_plots_and_metrics_are_produced(project):
    p, _ = project
    md = (p / "results" / "tables" / "ppl.md").read_text().splitlines()
    assert md[0] == "| Model | Method | 50% tiny.txt | 2:4 tiny.txt |"
    assert md[2].startswith("| llama | Dense |") and md[3].startswith("| llama | Wanda |")
    assert (p / "results" / "tables" / "ppl.tex").is_file()
    assert (p / "results" / "tables" / "ppl.csv").is_file()
    assert (p / "results" / "plots" / "llama-ppl.png").stat().st_size > 0
    summary = json.loads((p / "results" / "metrics.json").read_text())
    ppl = summary["llama"]["wanda"]["2:4"]["ppl"]["tiny.txt"]
    assert ppl > 1
    # settings recorded next to the figures, from the commands themselves
    report = json.loads((p / "results" / "models" / "tiny" / "wanda-2of4-s0" / "prune_report.json").read_text())
    assert report["settings"]["pattern"] == "2:4" and report["settings"]["method"] == "wanda"
    shown = _dvc(p, "metrics", "show")
    assert shown.returncode == 0 and f"{ppl:.5g}"[:4] in shown.stdout


def test_a_second_run_does_nothing(project):
    p, _ = project
    dry = snakemake(p, "-n", "--cores", "2")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr
    again = _dvc(p, "repro")
    assert again.returncode == 0
    assert "didn't change, skipping" in again.stdout
    assert "Running stage" not in again.stdout


def test_snakemake_html_report_holds_the_tables_and_plots(project):
    p, _ = project
    res = snakemake(p, "--report", "report.zip")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    import zipfile

    names = zipfile.ZipFile(p / "report.zip").namelist()
    assert any(n.endswith("ppl.md") for n in names)
    assert any(n.endswith("llama-ppl.png") for n in names)


def test_changing_one_sparsity_reruns_only_its_jobs(project):
    p, cfg = project
    changed = copy.deepcopy(cfg)
    changed["patterns"] = [0.6, "2:4"]
    res = snakemake(p, "-n", "--cores", "2", configfile=write_config(p / "changed.yaml", changed))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert job_counts(out) == {"prune": 1, "ppl": 1, "report": 1, "all": 1, "total": 4}
    planned = planned_outputs(out)
    assert "results/models/tiny/wanda-u60-s0" in planned
    assert not any("2of4" in f or "dense" in f or "/calib/" in f for f in planned)


def test_adding_a_seed_plans_only_that_draws_jobs(project):
    p, cfg = project
    more = copy.deepcopy(cfg)
    more["calibration"]["seeds"] = [0, 1]
    res = snakemake(p, "-n", "--cores", "2", configfile=write_config(p / "seeds.yaml", more))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert job_counts(out) == {"calib": 1, "prune": 2, "ppl": 2, "report": 1, "all": 1,
                               "total": 7}
    planned = planned_outputs(out)
    assert "results/calib/tiny/tinytext-n4-l32-s1.pt" in planned
    assert not any("-s0" in f or "/dense/" in f for f in planned)


def test_two_seeds_of_sparsegpt_and_apt_give_the_gap_table(project):
    """A real run over two calibration draws: per-seed checkpoints, one dense evaluation, the
    gap table equal to the formula on the perplexities the jobs wrote."""
    p, cfg = project
    two = copy.deepcopy(cfg)
    two.update(results="results-seeds", methods=["sparsegpt", "apt"], patterns=[0.5])
    two["calibration"]["seeds"] = [0, 1]
    res = snakemake(p, "--cores", "2", configfile=write_config(p / "two.yaml", two))
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    r = p / "results-seeds"
    assert sorted(f.name for f in (r / "calib" / "tiny").iterdir()) == [
        "tinytext-n4-l32-s0.pt", "tinytext-n4-l32-s1.pt"]
    assert sorted(d.name for d in (r / "metrics" / "tiny").iterdir()) == [
        "apt-u50-s0", "apt-u50-s1", "dense", "sparsegpt-u50-s0", "sparsegpt-u50-s1"]

    def ppl(variant):
        return json.loads((r / "metrics" / "tiny" / variant / "ppl-tinytext.json").read_text())["ppl"]

    dense = ppl("dense")
    closed = [(ppl(f"sparsegpt-u50-s{s}") - ppl(f"apt-u50-s{s}")) / (ppl(f"sparsegpt-u50-s{s}") - dense)
              for s in (0, 1)]
    rows = list(csv.reader((r / "tables" / "gap.csv").read_text().splitlines()))
    assert rows[0] == ["Model", "Pattern", "Seeds", "tiny.txt mean", "tiny.txt std",
                       "tiny.txt min", "tiny.txt max", "tiny.txt SE (windows)"]
    assert rows[1][:3] == ["llama", "50%", "0, 1"]
    assert float(rows[1][7]) >= 0   # the jobs' perplexity files list their windows
    assert float(rows[1][3]) == pytest.approx(sum(closed) / 2, rel=1e-9)
    assert float(rows[1][5]) == pytest.approx(min(closed)) and float(rows[1][6]) == pytest.approx(max(closed))
    md = (r / "tables" / "ppl.md").read_text()
    assert " ± " in md and "seeds 0, 1" in md
    summary = json.loads((r / "metrics.json").read_text())
    assert summary["llama"]["apt"]["50%"]["seeds"] == [0, 1]
    assert summary["llama"]["apt"]["50%"]["gap_closed"]["tiny.txt"]["mean"] == pytest.approx(sum(closed) / 2)


def test_a_failing_job_leaves_no_finished_looking_output(project):
    p, cfg = project
    failing = copy.deepcopy(cfg)
    failing["methods"] = ["wanda", "magnitude"]
    failing["method_args"] = {"magnitude": "--blocksize 0"}   # rejected by apt prune
    cf = write_config(p / "failing.yaml", failing)
    res = snakemake(p, "--cores", "2", "--keep-going", configfile=cf)
    assert res.returncode != 0
    models = p / "results" / "models" / "tiny"
    assert not any(d.name.startswith("magnitude") for d in models.iterdir())
    assert not (p / "results" / "metrics" / "tiny" / "magnitude-u50-s0").exists() or not any(
        (p / "results" / "metrics" / "tiny" / "magnitude-u50-s0").iterdir())
    # Snakemake still sees the failed jobs as to do, and nothing else
    dry = snakemake(p, "-n", "--cores", "2", configfile=cf)
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts["prune"] == 2 and counts.get("calib", 0) == 0


def test_dvc_push_then_pull_on_another_clone_gives_the_tables_without_a_rerun(project,
                                                                              tmp_path):
    """A lab's shared-filesystem remote: push after the run; a second copy of the project
    pulls, and `dvc repro` there does no work and the tables are the same bytes."""
    p, _ = project
    store = tmp_path / "dvc-store"
    assert _dvc(p, "remote", "add", "-d", "lab", str(store)).returncode == 0
    pushed = _dvc(p, "push")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    other = tmp_path / "other-clone"
    shutil.copytree(p, other, ignore=shutil.ignore_patterns("results", ".snakemake", "cache",
                                                            "tmp", "*.yaml.lock"))
    assert not (other / "results").exists()
    pulled = _dvc(other, "pull")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    for name in ("ppl.md", "ppl.csv", "ppl.tex"):
        assert (other / "results" / "tables" / name).read_bytes() == \
            (p / "results" / "tables" / name).read_bytes()
    again = _dvc(other, "repro")
    assert again.returncode == 0 and "didn't change, skipping" in again.stdout, again.stdout
