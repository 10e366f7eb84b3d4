"""OWL in the engine and in `apt prune`, on tiny random models."""

import json

import pytest
import torch
from safetensors.torch import load_file

from apt.cli import main
from apt.engine import PruneSettings, WorkDir, prune_model
from apt.models import adapter_for, load_model
from apt.pruning.allocation import OwlOptions, block_sparsities, outlier_ratio
from apt.pruning.masks import prune_count
from tiny_models import make_tiny_model

BLOCKS = 4
OUTLIER_BLOCK = 2


@pytest.fixture(scope="module")
def owl_model(tmp_path_factory):
    """A 4-block tiny LLaMA whose block 2 has hand-placed outlier weights: 1 % of its block's
    weights, in its MLP gate projection (whose inputs are normalized, unlike the down
    projection's), set to 10x the largest weight's magnitude."""
    from transformers import AutoModelForCausalLM

    path = make_tiny_model("llama", tmp_path_factory.mktemp("owl") / "m", layers=BLOCKS)
    model = AutoModelForCausalLM.from_pretrained(path)
    w = model.model.layers[OUTLIER_BLOCK].mlp.gate_proj.weight
    g = torch.Generator().manual_seed(0)
    block_size = sum(p.numel() for n, p in model.model.layers[OUTLIER_BLOCK].named_parameters()
                     if n.endswith("proj.weight"))
    idx = torch.randperm(w.numel(), generator=g)[:block_size // 100]
    with torch.no_grad():
        w.view(-1)[idx] = 10 * w.abs().max() * w.view(-1)[idx].sign()
    model.save_pretrained(path)
    return path


def _ids(n=3, length=16, seed=0):
    return torch.randint(0, 300, (n, length), generator=torch.Generator().manual_seed(seed))


def _prune(path, method, sparsity=0.6, **kw):
    model, _ = load_model(str(path))
    adapter = adapter_for(model)
    settings = PruneSettings(method=method, sparsity=sparsity, allocation="owl", **kw)
    report, _ = prune_model(model, adapter, _ids(), settings, progress=False)
    return model, adapter, report


def _reference_ratios(path, m=5.0):
    """Each block's pooled outlier ratio from a plain forward of the dense model, with hooks
    on the prunable layers (independent of the engine's passes)."""
    model, _ = load_model(str(path))
    adapter = adapter_for(model)
    sq, hooks = {}, []
    for i, block in enumerate(adapter.blocks(model)):
        for name, module in adapter.prunable(block).items():
            def hook(_m, args, key=(i, name)):
                x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
                sq[key] = sq.get(key, 0) + x.pow(2).sum(0)
            hooks.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        for row in _ids():
            model(input_ids=row.unsqueeze(0), use_cache=False)
    for h in hooks:
        h.remove()
    ratios, sizes = [], []
    for i, block in enumerate(adapter.blocks(model)):
        mods = adapter.prunable(block)
        ratios.append(outlier_ratio([(adapter.get_weight(mods[n]), sq[(i, n)]) for n in mods], m))
        sizes.append(sum(adapter.get_weight(mods[n]).numel() for n in mods))
    return ratios, sizes


@pytest.mark.parametrize("method", ["sparsegpt", "apt", "magnitude"])
def test_owl_gives_the_planned_block_sparsities_and_an_exact_total(owl_model, method):
    model, adapter, report = _prune(owl_model, method)
    alloc = report["allocation"]
    ratios, sizes = _reference_ratios(owl_model)
    assert [b["outlier_ratio"] for b in alloc["blocks"]] == pytest.approx(ratios, rel=1e-9)
    planned = block_sparsities(ratios, sizes, 0.6, 0.08)
    assert [b["sparsity_planned"] for b in alloc["blocks"]] == pytest.approx(planned, abs=1e-9)
    # the hand-placed outliers: the highest ratio, the lowest sparsity, at the band's edge
    assert max(ratios) == ratios[OUTLIER_BLOCK]
    got = [b["sparsity"] for b in alloc["blocks"]]
    assert min(got) == got[OUTLIER_BLOCK]
    assert got[OUTLIER_BLOCK] == pytest.approx(0.6 - 0.08, abs=1e-3)
    for b, s in zip(alloc["blocks"], planned):
        assert 0.52 - 1e-3 <= b["sparsity"] <= 0.68 + 1e-3
        # whole weights per layer: within a weight per layer of the plan
        assert abs(b["pruned"] - s * b["params"]) <= 7
    # the model's total is exactly floor(target * N), in the masks and in the weights
    total = report["totals"]["params"]
    assert report["totals"]["pruned"] == prune_count(0.6, total) == alloc["target_zeros"]
    zeros = 0
    for block in adapter.blocks(model):
        for module in adapter.prunable(block).values():
            zeros += int((adapter.get_weight(module) == 0).sum())
    assert zeros == prune_count(0.6, total)
    # block 0 sees the same inputs in both passes
    first = alloc["blocks"][0]
    assert first["outlier_ratio_pruned_inputs"] == pytest.approx(first["outlier_ratio"], rel=1e-6)


def test_owl_with_wanda_counts_whole_rows(owl_model):
    model, adapter, report = _prune(owl_model, "wanda")
    alloc = report["allocation"]
    assert alloc["count_unit"] == "row"
    K = prune_count(0.6, report["totals"]["params"])
    rows = [r["shape"][0] for r in report["modules"]]
    assert K - min(rows) < report["totals"]["pruned"] <= K
    for block in adapter.blocks(model):
        for module in adapter.prunable(block).values():
            per_row = (adapter.get_weight(module) == 0).sum(1)
            assert (per_row == per_row[0]).all()       # Wanda's per-row comparison is kept
    got = [b["sparsity"] for b in alloc["blocks"]]
    assert min(got) == got[OUTLIER_BLOCK]


def test_owl_options_reach_the_plan(owl_model):
    _, _, report = _prune(owl_model, "magnitude", sparsity=0.5, owl=OwlOptions(m=3.0, lam=0.2))
    alloc = report["allocation"]
    assert (alloc["owl_m"], alloc["owl_lambda"]) == (3.0, 0.2)
    ratios, sizes = _reference_ratios(owl_model, m=3.0)
    assert [b["outlier_ratio"] for b in alloc["blocks"]] == pytest.approx(ratios, rel=1e-9)
    assert min(b["sparsity_planned"] for b in alloc["blocks"]) == pytest.approx(0.3, abs=1e-12) \
        or max(b["sparsity_planned"] for b in alloc["blocks"]) == pytest.approx(0.7, abs=1e-12)


def test_owl_refuses_nm_in_the_engine(owl_model):
    model, _ = load_model(str(owl_model))
    with pytest.raises(ValueError, match="unstructured sparsity only"):
        prune_model(model, adapter_for(model), _ids(),
                    PruneSettings(method="wanda", sparsity=None, pattern="2:4", allocation="owl"),
                    progress=False)


class _Killed(Exception):
    pass


def test_killed_owl_run_resumes_with_identical_weights(owl_model, tmp_path):
    reference, _, full = _prune(owl_model, "sparsegpt")

    def kill_after_block_1(i):
        if i == 1:
            raise _Killed

    settings = PruneSettings(method="sparsegpt", sparsity=0.6, allocation="owl")
    model, _ = load_model(str(owl_model))
    work = WorkDir(tmp_path / "work", "fp")
    with pytest.raises(_Killed):
        prune_model(model, adapter_for(model), _ids(), settings, work_dir=work,
                    on_block_end=kill_after_block_1, progress=False)
    model, _ = load_model(str(owl_model))
    report, _ = prune_model(model, adapter_for(model), _ids(), settings,
                            work_dir=WorkDir(work.path, "fp"), progress=False)
    assert report["resumed_after_blocks"] == 2
    ref = reference.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in model.state_dict().items())
    assert report["allocation"]["blocks"] == full["allocation"]["blocks"]


def _cli(model, out, text, *extra, pattern=("--sparsity", "0.6")):
    return ["prune", "--model", str(model), "--method", "sparsegpt", *pattern, "--calib",
            str(text), "--nsamples", "3", "--seqlen", "16", "--seed", "1", "--out", str(out),
            "--no-progress", *extra]


def test_cli_uniform_is_todays_default_bit_for_bit(owl_model, tiny_text_file, tmp_path,
                                                   monkeypatch):
    monkeypatch.setenv("APT_CACHE", str(tmp_path / "cache"))
    assert main(_cli(owl_model, tmp_path / "a", tiny_text_file)) == 0
    assert main(_cli(owl_model, tmp_path / "b", tiny_text_file, "--allocation", "uniform")) == 0
    a, b = load_file(tmp_path / "a" / "model.safetensors"), \
        load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    report = json.loads((tmp_path / "b" / "prune_report.json").read_text())
    assert report["allocation"]["name"] == "uniform"
    assert all(blk["sparsity"] == pytest.approx(0.6, abs=1e-4)
               for blk in report["allocation"]["blocks"])
    # and OWL from the command line: the report has the plan, the total is exact
    assert main(_cli(owl_model, tmp_path / "c", tiny_text_file, "--allocation", "owl",
                     "--owl-lambda", "0.1")) == 0
    report = json.loads((tmp_path / "c" / "prune_report.json").read_text())
    assert report["settings"]["allocation"] == "owl"
    assert report["settings"]["owl"] == {"m": 5.0, "lam": 0.1, "spread": "band"}
    assert report["totals"]["pruned"] == report["allocation"]["target_zeros"]
    assert report["allocation"]["blocks"][OUTLIER_BLOCK]["sparsity"] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("extra,pattern,message", [
    (["--allocation", "owl"], ("--pattern", "2:4"), "applies to unstructured sparsity only"),
    (["--allocation", "even"], ("--sparsity", "0.6"), "unknown; known: uniform, owl"),
    (["--owl-m", "3"], ("--sparsity", "0.6"), "--owl-m set OWL's hyperparameters; add "
                                              "--allocation owl"),
    (["--allocation", "owl", "--owl-m", "0"], ("--sparsity", "0.6"), "m=0.0: expected > 0"),
    (["--allocation", "owl", "--owl-lambda", "0.5"], ("--sparsity", "0.6"),
     "lower lambda below 0.4"),
    (["--allocation", "owl", "--owl-spread", "authors", "--owl-lambda", "0.25"],
     ("--sparsity", "0.6"), "lower lambda below 0.2"),
    (["--owl-spread", "band"], ("--sparsity", "0.6"), "--owl-spread set OWL's"),
])
def test_cli_refuses_bad_allocations_before_pruning(owl_model, tiny_text_file, tmp_path,
                                                    monkeypatch, capsys, extra, pattern, message):
    import apt.engine

    def refuse(*a, **k):
        raise AssertionError("pruning started despite bad input")

    monkeypatch.setattr(apt.engine, "prune_model", refuse)
    assert main(_cli(owl_model, tmp_path / "o", tiny_text_file, *extra, pattern=pattern)) == 2
    assert message in capsys.readouterr().err


def test_owl_runs_on_every_family_with_an_exact_total(tiny_model_dir, family):
    model, _ = load_model(str(tiny_model_dir(family)))
    report, _ = prune_model(model, adapter_for(model), _ids(),
                            PruneSettings(method="sparsegpt", sparsity=0.5, allocation="owl"),
                            progress=False)
    alloc = report["allocation"]
    assert report["totals"]["pruned"] == prune_count(0.5, report["totals"]["params"])
    assert all(0.42 - 1e-3 <= b["sparsity"] <= 0.58 + 1e-3 for b in alloc["blocks"])
    assert all(0 <= b["outlier_ratio"] < 1 for b in alloc["blocks"])
