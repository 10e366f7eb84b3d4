"""Sequential engine on tiny random models of every family."""

import pytest
import torch

from apt.engine import PruneSettings, WorkDir, prune_model, relative_error, save_checkpoint
from apt.engine import sequential_logits
from apt.models import adapter_for, load_model
from apt.pruning import METHODS, HessianAccumulator


def _ids(n=3, length=16, seed=0):
    return torch.randint(0, 300, (n, length), generator=torch.Generator().manual_seed(seed))


def _load(path):
    model, tok = load_model(str(path))
    return model, tok, adapter_for(model)


def _pruned(family, tiny_model_dir, method="wanda", pattern="unstructured", sparsity=0.5):
    model, tok, adapter = _load(tiny_model_dir(family))
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    settings = PruneSettings(method=method, sparsity=sparsity if pattern == "unstructured" else None,
                             pattern=pattern)
    report, _ = prune_model(model, adapter, _ids(), settings, progress=False)
    return model, tok, adapter, dense, report


def test_sequential_forward_equals_full_model(tiny_model_dir, family):
    model, _, adapter = _load(tiny_model_dir(family))
    ids = _ids()
    with torch.no_grad():
        full = model(ids).logits
    seq = sequential_logits(model, adapter, ids)
    torch.testing.assert_close(seq, full, rtol=1e-5, atol=1e-5)


def _prunable_names(model, adapter):
    return {f"{adapter.blocks_path}.{i}.{n}": m for i, b in enumerate(adapter.blocks(model))
            for n, m in adapter.prunable(b).items()}


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_pruning_gives_exact_pattern_and_touches_nothing_else(tiny_model_dir, family, pattern,
                                                              tmp_path):
    model, tok, adapter, dense, report = _pruned(family, tiny_model_dir, pattern=pattern)
    prunable = _prunable_names(model, adapter)
    assert {r["name"] for r in report["modules"]} == set(prunable)
    for name, module in prunable.items():
        w = adapter.get_weight(module)
        zeros = w == 0
        if pattern == "2:4":
            per_group = zeros.reshape(w.shape[0], -1, 4).sum(-1)
            assert (per_group == 2).all(), name
        else:
            assert int(zeros.sum()) == round(0.5 * w.numel()), name
    pruned_params = {f"{n}.weight" for n in prunable}
    after = model.state_dict()
    changed = [k for k in dense if k not in pruned_params and not torch.equal(dense[k], after[k])]
    assert not changed
    assert report["totals"]["sparsity"] == pytest.approx(0.5)
    if pattern == "2:4":
        _check_reload(model, tok, report, tmp_path)


def _check_reload(model, tok, report, tmp_path):
    """The saved checkpoint reloads by path and gives the in-memory pruned model's logits."""
    from transformers import AutoModelForCausalLM

    out = save_checkpoint(model, tok, tmp_path / "out", report)
    assert (out / "prune_report.json").is_file()
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    ids = _ids(2, 12, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_keeps_the_pattern(tiny_model_dir, method):
    model, _, adapter, dense, report = _pruned("llama", tiny_model_dir, method=method,
                                               pattern="2:4")
    for name, module in _prunable_names(model, adapter).items():
        zeros = adapter.get_weight(module) == 0
        assert (zeros.reshape(zeros.shape[0], -1, 4).sum(-1) >= 2).all(), name
    for r in report["modules"]:
        assert 0 <= r["rel_error"] < 1.5


def test_relative_error_from_hessian_matches_direct():
    torch.manual_seed(0)
    x = torch.randn(200, 12)
    w = torch.randn(5, 12)
    wp = w.masked_fill(torch.rand(5, 12) < 0.5, 0)
    acc = HessianAccumulator(12)
    acc.add(x[:70])
    acc.add(x[70:])
    direct = ((x @ (w - wp).t()) ** 2).sum() / ((x @ w.t()) ** 2).sum()
    assert relative_error(w, wp, acc.hessian) == pytest.approx(float(direct), rel=1e-4)


class _Killed(Exception):
    pass


def _killed_after_block_0_and_resumed(path, ids, settings, work_path):
    """Prune the model at ``path``, killed after block 0 with a work folder, then rerun in a
    fresh model from the dense weights (as a new process would): (model, report)."""
    def kill_after_block_0(i):
        if i == 0:
            raise _Killed

    model, _, adapter = _load(path)
    with pytest.raises(_Killed):
        prune_model(model, adapter, ids, settings, work_dir=WorkDir(work_path, "fp"),
                    on_block_end=kill_after_block_0, progress=False)
    model, _, adapter = _load(path)
    report, _ = prune_model(model, adapter, ids, settings, work_dir=WorkDir(work_path, "fp"),
                            progress=False)
    return model, report


def test_killed_run_resumes_with_identical_weights(tiny_model_dir, family, tmp_path):
    path = tiny_model_dir(family)
    settings = PruneSettings(method="wanda", sparsity=0.5)
    ids = _ids()

    model, _, adapter = _load(path)
    prune_model(model, adapter, ids, settings, progress=False)
    reference = model.state_dict()
    model, report = _killed_after_block_0_and_resumed(path, ids, settings, tmp_path / "work")
    assert report["resumed_after_blocks"] == 1
    assert {r["block"] for r in report["modules"]} == {0, 1}
    resumed = model.state_dict()
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_checkpoint_interval_resumes_from_the_last_checkpoint(tiny_model_dir, tmp_path):
    """every=2 on a 2-block model: killed after block 0 there is no checkpoint yet (the run
    restarts from block 0, same result); killed after block 1 (the last) everything is kept."""
    path = tiny_model_dir("llama")
    settings = PruneSettings(method="wanda", sparsity=0.5)
    ids = _ids()
    model, _, adapter = _load(path)
    prune_model(model, adapter, ids, settings, progress=False)
    reference = model.state_dict()
    for kill_at, resumed_after in ((0, 0), (1, 2)):
        work = WorkDir(tmp_path / f"work{kill_at}", "fp", every=2)

        def kill(i, kill_at=kill_at):
            if i == kill_at:
                raise _Killed

        model, _, adapter = _load(path)
        with pytest.raises(_Killed):
            prune_model(model, adapter, ids, settings, work_dir=work, on_block_end=kill,
                        progress=False)
        hidden = sorted(p.name for p in work.path.glob("hidden_*.pt"))
        assert hidden == ([] if kill_at == 0 else ["hidden_0002.pt"])
        model, _, adapter = _load(path)
        report, _ = prune_model(model, adapter, ids, settings,
                                work_dir=WorkDir(work.path, "fp", every=2), progress=False)
        assert report["resumed_after_blocks"] == resumed_after
        resumed = model.state_dict()
        assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    with pytest.raises(ValueError, match="interval"):
        WorkDir(tmp_path / "w", "fp", every=0)


def test_other_settings_start_afresh(tiny_model_dir, tmp_path):
    model, _, adapter = _load(tiny_model_dir("llama"))
    ids = _ids()
    work = WorkDir(tmp_path / "work", "fp-a")

    def kill(i):
        raise _Killed

    with pytest.raises(_Killed):
        prune_model(model, adapter, ids, PruneSettings("wanda", 0.5), work_dir=work,
                    on_block_end=kill, progress=False)
    model, _, adapter = _load(tiny_model_dir("llama"))
    report, _ = prune_model(model, adapter, ids, PruneSettings("magnitude", 0.5),
                            work_dir=WorkDir(work.path, "fp-b"), progress=False)
    assert report["resumed_after_blocks"] == 0


def test_true_sequential_prunes_every_group(tiny_model_dir):
    model, _, adapter = _load(tiny_model_dir("opt"))
    settings = PruneSettings(method="wanda", sparsity=None, pattern="2:4", true_sequential=True)
    report, _ = prune_model(model, adapter, _ids(), settings, progress=False)
    assert [r["name"] for r in report["modules"]] == list(_prunable_names(model, adapter))
    assert report["totals"]["sparsity"] == pytest.approx(0.5)


@pytest.mark.slow
def test_smollm2_sequential_forward_equals_full_model():
    from pathlib import Path

    from apt.paths import resources_dir

    path = resources_dir() / "models" / "smollm2-135m"
    if not (Path(path) / "config.json").is_file():
        pytest.skip("offline SmolLM2 asset absent (run `apt assets`)")
    model, _, adapter = _load(path)
    ids = torch.randint(0, model.config.vocab_size, (1, 64),
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
    torch.testing.assert_close(sequential_logits(model, adapter, ids), full, rtol=1e-4, atol=1e-4)


def test_layers_reading_the_same_input_share_statistics(tiny_model_dir):
    """q/k/v (and gate/up) share one accumulator; its Hessian is the one of their input."""
    from apt.engine.hooks import accumulate_inputs, stats_forward

    model, _, adapter = _load(tiny_model_dir("llama"))
    block = adapter.blocks(model)[0]
    x = torch.randn(2, 10, model.config.hidden_size)
    seen = {}
    handle = block.self_attn.q_proj.register_forward_pre_hook(
        lambda m, inp: seen.setdefault("q", []).append(inp[0].detach().clone()))
    names = adapter.prunable_names()
    pos = model.model.rotary_emb(x, torch.arange(10).unsqueeze(0))
    with torch.no_grad(), accumulate_inputs(adapter, block, names, "cpu") as accs:
        for _ in range(2):
            stats_forward(block, x, position_embeddings=pos, attention_mask=None)
    handle.remove()
    assert accs["self_attn.k_proj"] is accs["self_attn.q_proj"] is accs["self_attn.v_proj"]
    assert accs["mlp.up_proj"] is accs["mlp.gate_proj"]
    assert accs["self_attn.o_proj"] is not accs["self_attn.q_proj"]
    xs = torch.cat(seen["q"]).reshape(-1, x.shape[-1])
    expected = 2 * xs.t() @ xs / xs.shape[0]
    torch.testing.assert_close(accs["self_attn.k_proj"].hessian, expected, rtol=1e-5, atol=1e-5)
    assert accs["self_attn.v_proj"].ntokens == 40


def test_apt_damping_follows_each_layers_inputs_and_the_calibration_tokens(tiny_model_dir):
    from apt.pruning.apt import damping_for

    model, _, adapter = _load(tiny_model_dir("llama"))
    ids = _ids(n=4, length=256)    # 1024 tokens: 3 n / T is 0.19 for the 64-input layers
    report, _ = prune_model(model, adapter, ids, PruneSettings(method="apt", sparsity=0.5),
                            progress=False)
    used = {}
    for rec in report["modules"]:
        expected = damping_for(rec["shape"][1], ids.numel())
        assert rec["info"]["percdamp_used"] == pytest.approx(expected), rec["name"]
        used[rec["shape"][1]] = expected
    assert used[64] < 0.2 and used[128] == 0.2
    # an explicit damping is used as given
    model, _, adapter = _load(tiny_model_dir("llama"))
    report, _ = prune_model(model, adapter, ids,
                            PruneSettings(method="apt", sparsity=0.5, percdamp=0.3),
                            progress=False)
    assert {rec["info"]["percdamp_used"] for rec in report["modules"]} == {0.3}


@pytest.mark.slow
def test_gemma3_sequential_forward_equals_full_model_past_its_window():
    """The real Gemma-3-270M, on more tokens than its 512-token sliding window."""
    from apt.data.sources import offline_model_dir

    path = offline_model_dir("gemma3-270m")
    if not (path / "config.json").is_file():
        pytest.skip("offline Gemma asset absent (run `apt assets --only gemma3`)")
    model, _, adapter = _load(path)
    assert model.config.sliding_window < 544
    ids = torch.randint(0, model.config.vocab_size, (1, 544),
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
    torch.testing.assert_close(sequential_logits(model, adapter, ids), full, rtol=1e-4, atol=1e-4)


def test_pruned_checkpoint_carries_the_licence_files_of_its_source(tiny_model_dir, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny_model_dir("gemma3"), src)
    (src / "NOTICE").write_text("Gemma is provided under and subject to the Gemma Terms of Use\n")
    (src / "GEMMA_TERMS_OF_USE.html").write_text("<html>terms</html>")
    (src / "notes.txt").write_text("not a licence")
    model, tok, adapter = _load(src)
    report, _ = prune_model(model, adapter, _ids(), PruneSettings(method="magnitude", sparsity=0.5),
                            progress=False)
    out = save_checkpoint(model, tok, tmp_path / "out", report)
    for name in ("NOTICE", "GEMMA_TERMS_OF_USE.html"):
        assert (out / name).read_bytes() == (src / name).read_bytes()
    assert not (out / "notes.txt").exists()


def test_gemma3_head_applies_the_final_soft_capping(tiny_model_dir):
    model, _, adapter = _load(tiny_model_dir("gemma3"))
    model.config.final_logit_softcapping = 0.5
    ids = _ids()
    with torch.no_grad():
        full = model(ids).logits
    assert full.abs().max() <= 0.5
    torch.testing.assert_close(sequential_logits(model, adapter, ids), full, rtol=1e-5, atol=1e-5)


def test_dense_target_statistics_pair_each_pruned_input_with_the_dense_one(tiny_model_dir):
    """accumulate_dense_target: the Hessian of the pruned block's inputs and their cross product
    with the dense copy's inputs of the same tokens, equal to the products of the captured
    inputs; on identical blocks and hidden states the cross product is the Hessian itself."""
    import copy

    from apt.engine.hooks import accumulate_dense_target, stats_forward

    model, _, adapter = _load(tiny_model_dir("llama"))
    block = adapter.blocks(model)[0]
    dense = copy.deepcopy(block)
    with torch.no_grad():
        block.mlp.up_proj.weight.mul_(0.5)           # the "pruned" block differs from the dense
    g = torch.Generator().manual_seed(0)
    xd = torch.randn(2, 10, model.config.hidden_size, generator=g)
    xp = xd + 0.1 * torch.randn(xd.shape, generator=g)
    pos = model.model.rotary_emb(xd, torch.arange(10).unsqueeze(0))
    seen = {"d": [], "p": []}
    h1 = dense.mlp.down_proj.register_forward_pre_hook(lambda m, i: seen["d"].append(i[0].clone()))
    h2 = block.mlp.down_proj.register_forward_pre_hook(lambda m, i: seen["p"].append(i[0].clone()))
    names = adapter.prunable_names()
    with torch.no_grad(), accumulate_dense_target(adapter, dense, block, names, "cpu") as accs:
        for j in range(2):
            stats_forward(dense, xd[j:j + 1], position_embeddings=pos, attention_mask=None)
            stats_forward(block, xp[j:j + 1], position_embeddings=pos, attention_mask=None)
    h1.remove()
    h2.remove()
    assert accs["self_attn.k_proj"] is accs["self_attn.q_proj"]
    d = torch.cat(seen["d"]).reshape(-1, seen["d"][0].shape[-1])
    p = torch.cat(seen["p"]).reshape(-1, d.shape[-1])
    acc = accs["mlp.down_proj"]
    torch.testing.assert_close(acc.hessian, 2 * p.t() @ p / 20, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(acc.cross, 2 * d.t() @ p / 20, rtol=1e-5, atol=1e-5)
    assert (acc.cross - acc.hessian).norm() > 0.1 * acc.hessian.norm()
    with torch.no_grad(), accumulate_dense_target(adapter, dense, dense, names, "cpu") as same:
        for j in range(2):
            stats_forward(dense, xd[j:j + 1], position_embeddings=pos, attention_mask=None)
            stats_forward(dense, xd[j:j + 1], position_embeddings=pos, attention_mask=None)
    for name in names:
        assert torch.equal(same[name].cross, same[name].hessian)


@pytest.mark.parametrize("method", ["sparsegpt", "apt"])
def test_dense_reconstruction_keeps_the_pattern_and_resumes_identically(tiny_model_dir, method,
                                                                          tmp_path):
    """reconstruct="dense": exact 2:4 on every prunable layer, a different result from "layer"
    past block 0, and a run killed after block 0 resumes (with the dense model's hidden states
    from the work folder) to bit-identical weights."""
    path = tiny_model_dir("llama")
    ids = _ids()
    settings = PruneSettings(method=method, sparsity=None, pattern="2:4", reconstruct="dense")
    model, _, adapter = _load(path)
    report, _ = prune_model(model, adapter, ids, settings, progress=False)
    reference = model.state_dict()
    for name, module in _prunable_names(model, adapter).items():
        w = adapter.get_weight(module)
        assert ((w.reshape(w.shape[0], -1, 4) == 0).sum(-1) == 2).all(), name
    assert report["settings"]["reconstruct"] == "dense"
    model, _, adapter = _load(path)
    prune_model(model, adapter, ids, PruneSettings(method=method, sparsity=None, pattern="2:4",
                                                   reconstruct="layer"), progress=False)
    layer = model.state_dict()
    last = [k for k in reference if ".layers.1." in k and k.endswith("proj.weight")]
    assert any(not torch.equal(reference[k], layer[k]) for k in last)

    model, report = _killed_after_block_0_and_resumed(path, ids, settings, tmp_path / "work")
    assert report["resumed_after_blocks"] == 1
    resumed = model.state_dict()
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_dense_reconstruction_is_refused_without_a_hessian():
    from apt.engine.sequential import reconstruct_mode

    with pytest.raises(ValueError, match="Hessian"):
        reconstruct_mode(PruneSettings(method="wanda", sparsity=0.5, reconstruct="dense"))
    with pytest.raises(ValueError, match="layer, dense"):
        reconstruct_mode(PruneSettings(method="apt", sparsity=0.5, reconstruct="global"))
    assert reconstruct_mode(PruneSettings(method="sparsegpt", sparsity=0.5)) == "layer"
    # the dense target corrects the inputs a layer will get: its groups are pruned in order
    dense = PruneSettings(method="sparsegpt", sparsity=0.5, reconstruct="dense")
    assert dense.resolved().true_sequential is True
    assert PruneSettings(method="sparsegpt", sparsity=0.5).resolved().true_sequential is False
    with pytest.raises(ValueError, match="true_sequential=False is refused"):
        PruneSettings(method="sparsegpt", sparsity=0.5, reconstruct="dense",
                      true_sequential=False).resolved()
