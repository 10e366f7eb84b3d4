"""The solvers, the engine and the commands on a CUDA device, checked against the CPU.

Skipped where no CUDA device is visible (CI has none). ``APT_TEST_DEVICE=cpu`` runs the same
tests with the CPU standing in for the device, a dry run of this file on a machine without a
GPU (the comparisons are then trivial, the code paths and the assertions are not).
"""

import json
import math
import os

import pytest
import torch

from apt.cli import main
from apt.engine import PruneSettings, prune_model, sequential_logits
from apt.eval.perplexity import perplexity
from apt.models import adapter_for, load_model
from apt.pruning import METHODS, HessianAccumulator, prune_matrix
from apt.pruning.apt import native_bfloat16
from apt.pruning.metrics import layer_error_parts

DEVICE = torch.device(os.environ.get("APT_TEST_DEVICE", "cuda"))
CPU = torch.device("cpu")

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                                 reason="no CUDA device (APT_TEST_DEVICE=cpu dry-runs this file)")]

PATTERNS = [("unstructured", 0.5), ("unstructured", 0.7), ("2:4", None), ("4:8", None)]


def _problem(m=96, n=128, seed=0):
    """W (m x n) and H = 2/T X X^T from inputs sharing a low-rank component (correlated
    inputs, where the joint update matters), with two dead inputs."""
    g = torch.Generator().manual_seed(seed)
    T = 4 * n
    x = torch.randn(n, T, generator=g, dtype=torch.float64)
    x += 2.0 * torch.randn(n, 8, generator=g, dtype=torch.float64) @ torch.randn(
        8, T, generator=g, dtype=torch.float64)
    x[[5, 77]] = 0.0
    w = torch.randn(m, n, generator=g) / math.sqrt(n)
    return w, (2.0 / T) * x @ x.T


def _error(w0, w, h):
    num, den = layer_error_parts(w0.double().cpu(), w.double().cpu(), h.double().cpu())
    return float(num / den)


def _check_pattern(res, pattern, sparsity, shape, per_row=False):
    mask = res.mask.cpu()
    assert mask.dtype == torch.bool and mask.shape == shape
    assert (res.weight.cpu()[mask] == 0).all()
    if pattern == "unstructured" and per_row:      # Wanda: the sparsity in every row
        assert (mask.sum(1) == math.floor(sparsity * shape[1])).all()
    elif pattern == "unstructured":
        assert int(mask.sum()) == math.floor(sparsity * mask.numel())
    else:
        n, m = (int(v) for v in pattern.split(":"))
        assert (mask.reshape(shape[0], -1, m).sum(-1) == n).all()


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("pattern,sparsity", PATTERNS)
def test_result_lives_on_the_device_with_the_exact_pattern(method, pattern, sparsity):
    w, h = _problem()
    res = prune_matrix(w.to(DEVICE), h.to(DEVICE), method=method, sparsity=sparsity,
                       pattern=pattern)
    assert res.weight.device.type == DEVICE.type and res.weight.dtype == torch.float32
    _check_pattern(res, pattern, sparsity, w.shape, per_row=method == "wanda")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", ["sparsegpt", "apt"])
def test_half_precision_weights_come_back_in_their_dtype(method, dtype):
    w, h = _problem()
    res = prune_matrix(w.to(DEVICE, dtype), h.to(DEVICE, torch.float32), method=method,
                       sparsity=0.5)
    assert res.weight.dtype == dtype and res.weight.device.type == DEVICE.type
    assert torch.isfinite(res.weight.float()).all()
    _check_pattern(res, "unstructured", 0.5, w.shape)


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
@pytest.mark.parametrize("pattern,sparsity", PATTERNS)
def test_score_methods_give_the_cpu_mask(method, pattern, sparsity):
    w, h = _problem()
    on_cpu = prune_matrix(w, h, method=method, sparsity=sparsity, pattern=pattern)
    on_dev = prune_matrix(w.to(DEVICE), h.to(DEVICE), method=method, sparsity=sparsity,
                          pattern=pattern)
    assert torch.equal(on_dev.mask.cpu(), on_cpu.mask)
    assert torch.equal(on_dev.weight.cpu(), on_cpu.weight)


# float64 everywhere: the device must then find the CPU's mask and weights (up to rounding)
EXACT_OPTIONS = {"sparsegpt": {}, "apt": {"compute_dtype": "float64", "admm_gemm_dtype": "float64"}}


@pytest.mark.parametrize("method", list(EXACT_OPTIONS))
@pytest.mark.parametrize("pattern,sparsity", PATTERNS)
def test_float64_solvers_agree_with_the_cpu(method, pattern, sparsity):
    w, h = _problem()
    opts = EXACT_OPTIONS[method]
    on_cpu = prune_matrix(w, h, method=method, sparsity=sparsity, pattern=pattern, **opts)
    on_dev = prune_matrix(w.to(DEVICE), h.to(DEVICE), method=method, sparsity=sparsity,
                          pattern=pattern, **opts)
    agree = float((on_dev.mask.cpu() == on_cpu.mask).double().mean())
    assert agree >= 0.999, f"masks agree on {agree:.4%} only"
    e_cpu, e_dev = _error(w, on_cpu.weight, h), _error(w, on_dev.weight, h)
    assert e_dev == pytest.approx(e_cpu, rel=1e-3)


@pytest.mark.parametrize("pattern,sparsity", PATTERNS)
def test_apt_default_on_the_device_beats_sparsegpt(pattern, sparsity):
    """The default search (bfloat16 GEMMs where native) still finds a lower layer error than
    SparseGPT, and records the GEMM dtype it used."""
    wins = 0
    for seed in range(3):
        w, h = _problem(seed=seed)
        wd, hd = w.to(DEVICE), h.to(DEVICE)
        apt = prune_matrix(wd, hd, method="apt", sparsity=sparsity, pattern=pattern)
        sgpt = prune_matrix(wd, hd, method="sparsegpt", sparsity=sparsity, pattern=pattern)
        wins += _error(w, apt.weight, h) < _error(w, sgpt.weight, h)
        expected = "bfloat16" if native_bfloat16(DEVICE) else "float32"
        assert apt.info["admm_gemm_dtype"] == expected
    assert wins == 3


def test_hessian_accumulated_on_the_device_equals_the_cpu_one():
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(2, 17, 48, generator=g) for _ in range(4)]
    acc_cpu, acc_dev = HessianAccumulator(48), HessianAccumulator(48, device=DEVICE)
    for x in batches:
        acc_cpu.add(x)
        acc_dev.add(x.to(DEVICE))
    assert acc_dev.hessian.device.type == DEVICE.type
    # float32 sums in other orders: equal up to rounding, relative to the largest entry
    scale = float(acc_cpu.hessian.abs().max())
    torch.testing.assert_close(acc_dev.hessian.cpu(), acc_cpu.hessian, rtol=1e-5,
                               atol=1e-6 * scale)


def _ids(n=4, length=32, seed=0):
    return torch.randint(0, 300, (n, length), generator=torch.Generator().manual_seed(seed))


def _load(path):
    model, _ = load_model(str(path))
    return model, adapter_for(model)


@pytest.mark.parametrize("fam", ["llama", "opt", "gpt2"])
def test_sequential_forward_on_the_device_equals_the_full_cpu_forward(tiny_model_dir, fam):
    model, adapter = _load(tiny_model_dir(fam))
    ids = _ids()
    with torch.no_grad():
        full = model(ids).logits
    seq = sequential_logits(model, adapter, ids, device=DEVICE)
    torch.testing.assert_close(seq, full, rtol=1e-4, atol=1e-4)
    # the model stays where it was
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.parametrize("method", list(METHODS))
def test_engine_on_the_device_prunes_like_the_cpu(tiny_model_dir, method):
    settings = PruneSettings(method=method, sparsity=None, pattern="2:4")
    pruned = {}
    reports = {}
    for dev in (CPU, DEVICE):
        model, adapter = _load(tiny_model_dir("llama"))
        reports[dev.type], _ = prune_model(model, adapter, _ids(), settings, device=dev,
                                           progress=False)
        pruned[dev.type] = {k: v.clone() for k, v in model.state_dict().items()}
    cpu, dev = pruned["cpu"], pruned[DEVICE.type]
    assert cpu.keys() == dev.keys()
    for name in cpu:
        if name.endswith("proj.weight"):
            zeros = dev[name] == 0
            assert (zeros.reshape(zeros.shape[0], -1, 4).sum(-1) >= 2).all(), name
    err_cpu = reports["cpu"]["totals"]["mean_rel_error"]
    err_dev = reports[DEVICE.type]["totals"]["mean_rel_error"]
    # the device computes in other orders (and APT's search in bfloat16 there): the same
    # quality, not the same bits
    assert err_dev == pytest.approx(err_cpu, rel=0.05 if method == "apt" else 1e-3)
    if DEVICE.type == "cuda":
        assert reports["cuda"]["memory"]["cuda_max_allocated_mb"] > 0


def test_perplexity_on_the_device_equals_the_cpu(tiny_model_dir):
    """As `apt ppl --device` does: the model loaded onto the device, the windows follow it."""
    path = str(tiny_model_dir("llama"))
    ids = _ids(n=1, length=200, seed=5).reshape(-1)
    on_cpu = perplexity(load_model(path)[0], ids, seqlen=64, batch_size=2, progress=False)
    model, _ = load_model(path, device=str(DEVICE))
    assert next(model.parameters()).device.type == DEVICE.type
    on_dev = perplexity(model, ids, seqlen=64, batch_size=2, progress=False)
    assert on_dev["windows"] == on_cpu["windows"]
    assert on_dev["nll_mean"] == pytest.approx(on_cpu["nll_mean"], rel=1e-4)


def test_prune_command_on_the_device(tiny_model_dir, tiny_text_file, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("APT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(tiny_model_dir("llama")), "--method", "apt",
                 "--pattern", "2:4", "--calib", str(tiny_text_file), "--nsamples", "3",
                 "--seqlen", "24", "--seed", "1", "--device", str(DEVICE), "--out", str(out),
                 "--no-progress"]) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["settings"]["method"] == "apt" and report["totals"]["sparsity"] == 0.5
    model = AutoModelForCausalLM.from_pretrained(out)
    q = model.model.layers[0].self_attn.q_proj.weight
    assert ((q == 0).reshape(q.shape[0], -1, 4).sum(-1) == 2).all()
