"""The benchmarks stay runnable: every module imports, the cheap ones run end to end on tiny
inputs, and what they write agrees with the library computed directly on the same problems."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

from apt.pruning import METHODS, parse_target, prune_matrix
from apt.pruning.metrics import layer_error_parts
from benchmarks import common

BENCH = Path(__file__).parents[1] / "benchmarks"
MODULES = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in ("__init__", "common"))


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_imports_and_has_main(name):
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(module.main)
    assert "sys.path" not in (BENCH / f"{name}.py").read_text()


# ------------------------------------------------------------------------------------ parsers
def test_patterns_read_as_the_recorded_runs_read_them():
    """The spellings the recorded runs used give the targets they meant (label, pattern
    argument of prune_matrix, fraction of zeros); the path token names their work folders."""
    got = [(t.label, t.pattern_arg, t.sparsity, t.token)
           for t in common.targets("50%,0.5,60%,70%,0.7,2:4,4:8")]
    assert got == [("50%", "unstructured", 0.5, "u50"), ("50%", "unstructured", 0.5, "u50"),
                   ("60%", "unstructured", 0.6, "u60"), ("70%", "unstructured", 0.7, "u70"),
                   ("70%", "unstructured", 0.7, "u70"), ("2:4", "2:4", 0.5, "2of4"),
                   ("4:8", "4:8", 0.5, "4of8")]
    with pytest.raises(SystemExit, match="--patterns '150'"):
        common.targets("50%,150")


def test_prune_command_flags_are_those_of_the_recorded_runs():
    from benchmarks.prune_smollm2 import pattern_flags

    assert pattern_flags(parse_target("0.5")) == ["--pattern", "unstructured", "--sparsity", "0.5"]
    assert pattern_flags(parse_target("50%")) == ["--pattern", "unstructured", "--sparsity", "0.5"]
    assert pattern_flags(parse_target("2:4")) == ["--pattern", "2:4"]


def test_options_read_as_json_values_did():
    """Values the recorded runs passed (read as JSON before, as YAML now) read the same."""
    assert common.method_options(["apt.percdamp=0.05", "apt.admm_iters=20",
                                  "apt.admm_gemm_dtype=float32", "sparsegpt.refit=false"]) == {
        "apt": {"percdamp": 0.05, "admm_iters": 20, "admm_gemm_dtype": "float32"},
        "sparsegpt": {"refit": False}}
    recorded = ['{"joint_block":1,"refit":"cg","refit_iters":10}', '{"tokens": null}',
                '{"admm_rho":1.0}', '{"percdamp":0.1,"score":"sparsegpt","refit":false}', '{}']
    parsed = common.variants([f"v{i}={raw}" for i, raw in enumerate(recorded)])
    assert parsed == {f"v{i}": json.loads(raw) for i, raw in enumerate(recorded)}
    assert common.key_values(["admm_rho=1.5", "refit=false", "admm_exact_steps=3"]) == {
        "admm_rho": 1.5, "refit": False, "admm_exact_steps": 3}
    with pytest.raises(SystemExit, match="METHOD.KEY=VALUE"):
        common.method_options(["refit=false"])
    with pytest.raises(SystemExit, match="expected NAME="):
        common.variants(["d05=0.05"])


# ------------------------------------------------------------------------- tiny Hessian files
def tiny_hessians(path: Path, tokens: int = 64) -> dict:
    layers = {}
    for i, (m, n) in enumerate([(8, 16), (12, 32)]):
        w, h = common.synthetic_problem(m, n, seed=i)
        layers[f"model.layers.0.l{i}"] = (w, h.double())
    torch.save({**layers, "__meta__": {"ntokens": tokens, "note": "tiny"}}, path)
    return layers


def totals(layers: dict, method: str, target, **options) -> float:
    num = den = 0.0
    for w, h in layers.values():
        res = prune_matrix(w, h, method, sparsity=target.sparsity, pattern=target.pattern_arg,
                           **options)
        a, b = layer_error_parts(w, res.weight, h)
        num, den = num + a, den + b
    return num / den


def test_solvers_benchmark_writes_the_library_errors(tmp_path):
    from benchmarks import solvers

    layers = tiny_hessians(tmp_path / "h.pt")
    out = tmp_path / "solvers.json"
    assert solvers.main(["--hessians", str(tmp_path / "h.pt"), "--patterns", "50%,2:4",
                         "--opt", "apt.refit=false", "--synthetic-shapes", "8x16",
                         "--synthetic-patterns", "2:4",
                         "--synthetic-methods", "sparsegpt,reference,plain,apt",
                         "--threads", "0", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["settings"]["patterns"] == ["50%", "2:4"]
    assert rep["settings"]["options"] == {"apt": {"refit": False}}
    assert rep["command"].startswith(".venv/bin/python -m benchmarks.solvers --hessians")
    assert set(rep["real"]) == set(METHODS)
    for label in ("50%", "2:4"):
        target = parse_target(label)
        for method in METHODS:
            entry = rep["real"][method][label]
            assert entry["status"] == "ok" and set(entry["per_layer"]) == set(layers)
            extra = {"refit": False} if method == "apt" else {}
            assert entry["total_rel_error"] == pytest.approx(
                totals(layers, method, target, tokens=64, **extra), rel=1e-12)
        assert label in rep["apt_vs_sparsegpt"]
    syn = {r["method"]: r for r in rep["synthetic"]}
    # the two transcriptions of the reference agree with ours on N:M (same mask rule)
    assert syn["reference"]["rel_error"] == pytest.approx(syn["sparsegpt"]["rel_error"], rel=1e-4)
    assert syn["plain"]["rel_error"] == pytest.approx(syn["sparsegpt"]["rel_error"], rel=1e-4)
    assert "packages" in rep["environment"]


def test_apt_variants_on_tiny_layers(tmp_path):
    from benchmarks import apt_variants

    layers = tiny_hessians(tmp_path / "h.pt")
    out = tmp_path / "variants.json"
    assert apt_variants.main(["--hessians", str(tmp_path / "h.pt"), "--layers", "layers",
                              "--heldout", str(tmp_path / "h.pt"), "--patterns", "0.5,2:4",
                              "--variants", "d05={percdamp: 0.05}",
                              "median={damp_unit: median, percdamp: 0.2}",
                              "--threads", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"50%", "2:4"}
    summary = results["50%"]["summary"]
    assert summary["d05"]["total_rel"] == pytest.approx(
        totals(layers, "apt", parse_target("50%"), tokens=64, percdamp=0.05), rel=1e-12)
    assert summary["sparsegpt"]["ratio_vs_sparsegpt"] == 1.0
    for s in results["2:4"]["summary"].values():   # held-out Hessians equal to the calibration
        assert s["heldout_ratio_vs_sparsegpt"] == pytest.approx(s["ratio_vs_sparsegpt"], rel=1e-12)
        assert s["heldout_won"] == s["won"] and s["layers"] == 2


def test_hessian_subset_shares_equal_hessians(tmp_path):
    from benchmarks import hessian_subset

    w, h = common.synthetic_problem(4, 16)
    torch.save({"a.q": (w, h.double()), "a.k": (w.clone(), h.double()),
                "b.q": (w, 2 * h.double()), "__meta__": {"ntokens": 32}}, tmp_path / "h.pt")
    assert hessian_subset.main(["--hessians", str(tmp_path / "h.pt"), "--layers", r"^a\.",
                                "--out", str(tmp_path / "s.pt")]) == 0
    data, meta = common.load_hessians(tmp_path / "s.pt")
    assert set(data) == {"a.q", "a.k"} and meta["ntokens"] == 32
    assert data["a.q"][1].data_ptr() == data["a.k"][1].data_ptr()
    assert torch.equal(data["a.k"][1], h.double())


def test_timing_benchmarks_on_tiny_shapes(tmp_path):
    from benchmarks import apt_timing, profile_solver, synthetic_heldout

    out = tmp_path / "timing.json"
    assert apt_timing.main(["--shapes", "16x32", "--patterns", "50%,2:4", "--repeats", "1",
                            "--threads", "1", "--variants", "norefit={refit: false}",
                            "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert set(rep["results"]) == {"16x32 50%", "16x32 2:4"}
    assert rep["variants"] == {"norefit": {"refit": False}}
    assert rep["results"]["16x32 2:4"]["sparsegpt"]["ratio_vs_sparsegpt"] == 1.0

    out = tmp_path / "heldout.json"
    assert synthetic_heldout.main(["--shapes", "16x32", "--ratios", "2", "--patterns", "2:4",
                                   "--variants", "sparsegpt={}", "apt={}", "--out",
                                   str(out)]) == 0
    rep = json.loads(out.read_text())
    assert [(r["variant"], r["pattern"], r["tokens"]) for r in rep["rows"]] == [
        ("sparsegpt", "2:4", 64), ("apt", "2:4", 64)]
    assert len(rep["ratios_to_sparsegpt"]) == 1

    out = tmp_path / "profile.txt"
    assert profile_solver.main(["--method", "sparsegpt", "--shape", "16x32", "--pattern", "2:4",
                                "--rows", "3", "--out", str(out)]) == 0
    assert out.read_text().startswith("sparsegpt 16x32 2:4 on cpu")


# ------------------------------------------------------------------------ Hessian collection
def test_collect_hessians_equals_hooks_on_the_full_forward(tmp_path, tiny_model_dir,
                                                           tiny_text_file):
    """The engine's block-by-block capture gives the Hessians that forward hooks on the
    model's own full forward give (the way the benchmark computed them before), in the file
    format the solver benchmarks read."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from apt.data.calibration import sample_calibration
    from benchmarks import collect_hessians

    folder = tiny_model_dir("llama")
    out = tmp_path / "h.pt"
    assert collect_hessians.main(["--model", str(folder), "--calib", str(tiny_text_file),
                                  "--blocks", "1", "--nsamples", "3", "--seqlen", "16",
                                  "--out", str(out)]) == 0
    data, meta = common.load_hessians(out)
    assert meta["ntokens"] == 3 * 16 and meta["blocks"] == [1]

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = sample_calibration(AutoTokenizer.from_pretrained(folder), str(tiny_text_file), 3, 16, 0)
    linears = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    sums = {}
    hooks = []
    for name in linears:
        module = model.model.layers[1].get_submodule(name)

        def hook(_m, inputs, _out, name=name):
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).double()
            sums[name] = sums.get(name, 0) + x.T @ x

        hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        for row in ids:
            model(row.unsqueeze(0))
    assert list(data) == [f"model.layers.1.{name}" for name in linears]
    for name in linears:
        weight, hessian = data[f"model.layers.1.{name}"]
        assert weight.dtype == torch.float32 and hessian.dtype == torch.float64
        assert torch.equal(weight, model.model.layers[1].get_submodule(name).weight)
        expected = 2.0 / (3 * 16) * sums[name]
        torch.testing.assert_close(hessian, expected, rtol=1e-5,
                                   atol=1e-6 * float(expected.abs().max()))

    # the same windows from a file of `apt calib` give the same file
    torch.save({"input_ids": ids, "settings": {}}, tmp_path / "calib.pt")
    assert collect_hessians.main(["--model", str(folder), "--calib", str(tmp_path / "calib.pt"),
                                  "--blocks", "1", "--out", str(tmp_path / "h2.pt")]) == 0
    again, _ = common.load_hessians(tmp_path / "h2.pt")
    assert all(torch.equal(again[k][1], data[k][1]) for k in data)
