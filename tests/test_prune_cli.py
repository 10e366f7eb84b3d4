"""`apt prune` end to end on tiny models: checkpoint, report, resume, determinism, bad input."""

import json

import pytest
import torch
from safetensors.torch import load_file

import apt.engine
from apt.cli import main
from apt.engine.checkpoint import WorkDir


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("APT_CACHE", str(tmp_path / "cache"))


def _args(model, text, out, *extra, method="wanda", pattern="2:4", nsamples=3, seqlen=24):
    return ["prune", "--model", str(model), "--method", method, "--pattern", pattern,
            "--calib", str(text), "--nsamples", str(nsamples), "--seqlen", str(seqlen),
            "--seed", "1", "--device", "cpu", "--out", str(out), "--no-progress", *extra]


def _weights(folder):
    return load_file(folder / "model.safetensors")


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_prune_writes_loadable_checkpoint_and_report(tiny_model_dir, tiny_text_file, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "pruned"
    assert main(_args(tiny_model_dir("llama"), tiny_text_file, out)) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    q = model.model.layers[0].self_attn.q_proj.weight
    assert ((q == 0).reshape(q.shape[0], -1, 4).sum(-1) == 2).all()
    report = json.loads((out / "prune_report.json").read_text())
    assert report["settings"]["method"] == "wanda" and report["seed"] == 1
    assert report["settings"]["pattern"] == "2:4" and report["settings"]["sparsity"] == 0.5
    assert report["calibration"]["nsamples"] == 3 and report["calibration"]["seqlen"] == 24
    assert report["environment"]["packages"]["torch"]
    assert report["memory"]["cpu_max_rss_mb"] > 0
    mod = report["modules"][0]
    assert {"name", "shape", "sparsity", "rel_error", "time_s"} <= set(mod)
    assert report["totals"]["sparsity"] == pytest.approx(0.5)
    assert not (tmp_path / "pruned.partial-work").exists()
    # the same seed gives an identical checkpoint
    again = tmp_path / "again"
    assert main(_args(tiny_model_dir("llama"), tiny_text_file, again)) == 0
    assert _same(_weights(out), _weights(again))


@pytest.mark.parametrize("family", ["llama", "mamba"])
def test_killed_run_leaves_no_output_and_resumes_identically(tiny_model_dir, tiny_text_file,
                                                             tmp_path, monkeypatch, family):
    ref = tmp_path / "ref"
    assert main(_args(tiny_model_dir(family), tiny_text_file, ref)) == 0

    original = WorkDir.save_block

    def save_then_die(self, index, *a, **k):
        original(self, index, *a, **k)
        raise KeyboardInterrupt  # killed right after block 0 was saved

    out = tmp_path / "out"
    monkeypatch.setattr(WorkDir, "save_block", save_then_die)
    assert main(_args(tiny_model_dir(family), tiny_text_file, out)) == 130
    assert not out.exists()
    assert (tmp_path / "out.partial-work" / "state.json").is_file()
    monkeypatch.setattr(WorkDir, "save_block", original)
    assert main(_args(tiny_model_dir(family), tiny_text_file, out)) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["resumed_after_blocks"] == 1
    assert _same(_weights(ref), _weights(out))


def test_calibration_file_and_yaml_config(tiny_model_dir, tmp_path):
    ids = torch.randint(0, 300, (4, 20), generator=torch.Generator().manual_seed(0))
    calib = tmp_path / "calib.pt"
    torch.save({"input_ids": ids, "settings": {"dataset": "x"}}, calib)
    cfg = tmp_path / "prune.yaml"
    cfg.write_text(f"model: {tiny_model_dir('opt')}\nmethod: magnitude\nsparsity: 0.5\n"
                   f"calib: {calib}\nnsamples: 4\nseqlen: 20\nout: {tmp_path / 'o'}\n"
                   "option: []\nno_progress: true\n")
    assert main(["prune", "--config", str(cfg)]) == 0
    report = json.loads((tmp_path / "o" / "prune_report.json").read_text())
    assert report["settings"]["method"] == "magnitude"
    assert report["calibration"]["source"] == str(calib)


def test_calibration_file_sets_the_sizes_when_not_given(tiny_model_dir, tmp_path):
    ids = torch.randint(0, 300, (3, 16), generator=torch.Generator().manual_seed(1))
    calib = tmp_path / "calib.pt"
    torch.save({"input_ids": ids, "settings": {}}, calib)
    out = tmp_path / "o"
    assert main(["prune", "--model", str(tiny_model_dir("llama")), "--method", "wanda",
                 "--sparsity", "0.5", "--calib", str(calib), "--out", str(out),
                 "--no-progress"]) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert (report["nsamples"], report["seqlen"]) == (3, 16)


@pytest.fixture
def no_pruning(monkeypatch):
    """Errors must come before any pruning starts."""
    def refuse(*a, **k):
        raise AssertionError("pruning started despite bad input")

    monkeypatch.setattr(apt.engine, "prune_model", refuse)


def _short_calib(tmp_path, rows=2, cols=24, high=300):
    path = tmp_path / "short.pt"
    torch.save({"input_ids": torch.randint(0, high, (rows, cols)), "settings": {}}, path)
    return path


@pytest.mark.parametrize("case,message", [
    ("method", "unknown; known"),
    ("pattern", "N:M needs 0 < N < M"),
    ("sparsity", "sparsity must be in (0, 1)"),
    ("nosparsity", "needs a sparsity"),
    ("seqlen", "longer than the model allows"),
    ("fewer", "fewer than the 3 x 24 asked"),
    ("calib_seqlen", "windows of 16 tokens"),
    ("vocab", "outside the model's vocabulary"),
    ("model", "unknown model"),
    ("corrupt", "corrupt or truncated"),
    ("exists", "exists; remove it or pass --force"),
    ("device", "cuda"),
    ("option", "expected KEY=VALUE"),
    ("tooshort", "tiny.txt"),
    ("architecture", "unsupported architecture"),
    ("checkpoint", "--checkpoint-every must be a positive integer"),
    ("reconstruct", "refits the kept weights from the layer's Hessian (sparsegpt, apt)"),
    ("ridge", "--reconstruct-ridge applies to --reconstruct dense only"),
    ("ridge0", "reconstruct_ridge must be > 0"),
])
def test_bad_input_is_refused_before_pruning(tiny_model_dir, tiny_text_file, tmp_path, capsys,
                                             no_pruning, case, message):
    import shutil

    model, text, out = tiny_model_dir("llama"), tiny_text_file, tmp_path / "out"
    extra, kw = [], {}
    if case == "method":
        kw["method"] = "nosuch"
    elif case == "pattern":
        kw["pattern"] = "4:2"
    elif case == "sparsity":
        kw["pattern"] = "unstructured"
        extra = ["--sparsity", "1.5"]
    elif case == "nosparsity":
        kw["pattern"] = "unstructured"
    elif case == "seqlen":
        kw["seqlen"] = 1000  # tiny models allow 256 positions
    elif case == "fewer":
        text = _short_calib(tmp_path, rows=2)
    elif case == "calib_seqlen":
        text = _short_calib(tmp_path, rows=3, cols=16)
    elif case == "vocab":
        text = _short_calib(tmp_path, rows=3, high=100_000)
    elif case == "model":
        model = tmp_path / "missing"
    elif case == "corrupt":
        model = shutil.copytree(model, tmp_path / "m")
        f = model / "model.safetensors"
        f.write_bytes(f.read_bytes()[:-100])
    elif case == "exists":
        out.mkdir()
    elif case == "device":
        if torch.cuda.is_available():
            pytest.skip("has CUDA")
        extra = ["--device", "cuda"]
    elif case == "option":
        extra = ["--option", "novalue"]
    elif case == "checkpoint":
        extra = ["--checkpoint-every", "0"]
    elif case == "reconstruct":
        extra = ["--reconstruct", "dense"]          # with wanda, which keeps its weights
    elif case == "ridge":
        extra = ["--reconstruct-ridge", "0.1"]
        kw["method"] = "sparsegpt"
    elif case == "ridge0":
        extra = ["--reconstruct", "dense", "--reconstruct-ridge", "0"]
        kw["method"] = "sparsegpt"
    elif case == "architecture":
        model = shutil.copytree(model, tmp_path / "m")
        cfg = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt_neox"}))
    elif case == "tooshort":
        text = tmp_path / "tiny.txt"
        text.write_text("too short")
    assert main(_args(model, text, out, *extra, **kw)) == 2
    err = capsys.readouterr().err
    assert message in err, err
    if case != "exists":
        assert not out.exists()
