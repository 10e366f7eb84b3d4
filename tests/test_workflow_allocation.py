"""The pipeline's `allocation` key: OWL's flags reach the unstructured prune jobs only."""

import jsonschema
import pytest
import yaml

from workflow_util import ROOT, load_config, snakemake, write_config

SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _prune_commands(out):
    return {b.split("output: ")[1].split(",")[0].split("/")[-1]: b
            for b in out.split("\nrule ") if b.startswith("prune:")}


def test_owl_flags_reach_unstructured_jobs_only(tmp_path):
    cfg = load_config("config.yaml")
    cfg["allocation"] = {"name": "owl", "owl_lambda": 0.1, "owl_spread": "authors"}
    res = snakemake(tmp_path, "-n", "--cores", "1", "-p",
                    configfile=write_config(tmp_path / "owl.yaml", cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = _prune_commands(res.stdout + res.stderr)
    assert jobs and any("-u50" in k for k in jobs) and any("-2of4" in k for k in jobs)
    for name, block in jobs.items():
        owl = "--allocation owl --owl-lambda 0.1 --owl-spread authors " in block
        assert owl == ("-u50" in name), (name, block)
        assert "--owl-m" not in block          # not set: the library's default


def test_default_config_has_no_allocation_flags(tmp_path):
    res = snakemake(tmp_path, "-n", "--cores", "1", "-p",
                    configfile=ROOT / "config" / "config.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "--allocation" not in res.stdout + res.stderr


@pytest.mark.parametrize("value", [{"name": "layerwise"}, {"name": "owl", "owl_m": 0},
                                   {"name": "owl", "lam": 0.1}, "owl",
                                   {"name": "owl", "owl_spread": "wide"}])
def test_schema_refuses_bad_allocations(value):
    cfg = load_config("config.yaml")
    cfg["allocation"] = value
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(cfg))
    assert errors and all(list(e.absolute_path)[:1] == ["allocation"] for e in errors)
