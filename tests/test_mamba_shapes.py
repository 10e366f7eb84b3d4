"""Mamba at the shapes of the hub checkpoint config/paper.yaml names (state-spaces/mamba-130m-hf),
which this project's machines cannot download: random weights, two of its 24 blocks, every
pattern of the paper config pruned through `apt prune`. The tiny test models have no
time_step_rank of 48 (dt_proj's 48 inputs) nor a 1536-wide mixer; a shape the patterns or the
engine could not take would show here, not on a user's GPU.
"""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from apt.cli import main
from apt.pruning import parse_target
from tiny_models import make_tokenizer
from workflow_util import ROOT

# The architecture fields of state-spaces/mamba-130m-hf's config.json (its model card's config).
MAMBA_130M = dict(hidden_size=768, intermediate_size=1536, state_size=16, conv_kernel=4,
                  expand=2, time_step_rank=48, use_bias=False, use_conv_bias=True,
                  layer_norm_epsilon=1e-5, tie_word_embeddings=True)
PRUNED = ("in_proj", "x_proj", "dt_proj", "out_proj")


@pytest.fixture(scope="module")
def mamba_130m_shapes(tmp_path_factory):
    from transformers import MambaConfig, MambaForCausalLM

    path = tmp_path_factory.mktemp("mamba130m-shapes")
    tok = make_tokenizer()
    torch.manual_seed(0)
    model = MambaForCausalLM(MambaConfig(vocab_size=len(tok), num_hidden_layers=2, **MAMBA_130M))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _paper_patterns():
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    assert any("mamba" in m["source"] for m in cfg["models"].values())
    return [parse_target(p) for p in cfg["patterns"]]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("APT_CACHE", str(tmp_path / "cache"))


_CASES = [("sparsegpt", t) for t in _paper_patterns()] + [
    ("apt", parse_target(p)) for p in ("2:4", 0.7)]


@pytest.mark.parametrize("method, target", _CASES, ids=lambda x: getattr(x, "token", x))
def test_every_paper_pattern_prunes_mamba_130m_shapes_exactly(mamba_130m_shapes, tiny_text_file,
                                                               tmp_path, method, target):
    flags = (["--pattern", target.pattern_arg] if target.pattern.structured
             else ["--pattern", "unstructured", "--sparsity", str(target.sparsity)])
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(mamba_130m_shapes), "--method", method, *flags,
                 "--calib", str(tiny_text_file), "--nsamples", "2", "--seqlen", "32",
                 "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    before, after = load_file(mamba_130m_shapes / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    for name, w in after.items():
        pruned = any(f"mixer.{p}.weight" in name for p in PRUNED)
        if not pruned:   # conv1d, A_log, D, norms, embeddings stay as they were
            assert torch.equal(w, before[name]), name
            continue
        zeros = w == 0
        if target.pattern.structured:
            n, m = target.pattern.n, target.pattern.m
            assert (zeros.reshape(w.shape[0], -1, m).sum(-1) == n).all(), name
        else:
            assert zeros.sum().item() == pytest.approx(target.sparsity * w.numel(), abs=w.shape[0]), name
    report = json.loads((out / "prune_report.json").read_text())
    assert {m["name"].rsplit(".", 1)[-1] for m in report["modules"]} == set(PRUNED)
    assert report["totals"]["sparsity"] == pytest.approx(target.sparsity, abs=1e-3)
