"""`apt export` on tiny pruned models of every family: the compressed-tensors sparse formats
round-trip bit for bit (through compressed-tensors' decompression and through the model
transformers builds), give the same perplexity, hold the sizes the formats define, and bad input
is refused before anything is compressed."""

import json
import math
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from apt.cli import main
from apt.engine.export import BITMASK, SPARSE_24, stored_bytes
from apt.models import load_model
from apt.models.compressed import decompressed_state_dict, is_compressed, sparsity_config


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("APT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def pruned(tiny_model_dir, tiny_text_file, tmp_path_factory):
    """``pruned(family, pattern)`` -> folder of that tiny model pruned by magnitude (cached)."""
    root = tmp_path_factory.mktemp("pruned")
    made = {}

    def get(family, pattern):
        if (family, pattern) not in made:
            out = root / f"{family}-{pattern.replace(':', '-')}"
            args = ["prune", "--model", str(tiny_model_dir(family)), "--method", "magnitude",
                    "--pattern", pattern, "--calib", str(tiny_text_file), "--nsamples", "2",
                    "--seqlen", "16", "--out", str(out), "--no-progress"]
            if pattern == "unstructured":
                args += ["--sparsity", "0.5"]
            assert main(args) == 0
            made[family, pattern] = out
        return made[family, pattern]

    return get


def _bits(t):
    """A tensor's bytes, so that equality is bit for bit (signed zeros, NaN payloads)."""
    return t.contiguous().view(torch.uint8) if t.is_floating_point() else t


def _bit_identical(a, b):
    return (a.keys() == b.keys()
            and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                    and torch.equal(_bits(a[k]), _bits(b[k])) for k in a))


def _headers(folder):
    out = {}
    for f in folder.glob("*.safetensors"):
        with safe_open(f, "pt") as fh:
            out.update({k: (fh.get_slice(k).get_shape(), fh.get_slice(k).get_dtype())
                        for k in fh.keys()})
    return out


def _stream(seed=0, n=200, vocab=300):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_export_round_trip_is_bit_identical(family, pattern, pruned, tmp_path):
    from apt.eval.perplexity import perplexity

    src, out = pruned(family, pattern), tmp_path / "exported"
    assert main(["export", "--model", str(src), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    sc = sparsity_config(config)
    # GPT-2's Conv1D stores in x out, so its 2:4 groups are not along the stored rows
    want = SPARSE_24 if pattern == "2:4" and family != "gpt2" else BITMASK
    assert sc["format"] == want and sc["sparsity_structure"] == pattern
    assert is_compressed(out) and not is_compressed(src)

    dense = load_file(src / "model.safetensors")
    # compressed-tensors' own decompression gives back every stored tensor, bit for bit
    assert _bit_identical(decompressed_state_dict(out), dense)

    # the stored tensors of each pruned layer have the sizes the format defines
    report = json.loads((src / "prune_report.json").read_text())
    headers = _headers(out)
    for rec in report["modules"]:
        name = rec["name"]
        w = dense[f"{name}.weight"]
        rows, cols = w.shape
        assert f"{name}.weight" not in headers
        assert headers[f"{name}.bitmask"] == ([rows, math.ceil(cols / 8)], "U8")
        values = int((w != 0).sum()) if want == BITMASK else rows * cols // 2
        assert math.prod(headers[f"{name}.compressed"][0]) == values
    exp = json.loads((out / "export_report.json").read_text())
    assert exp["bytes"]["pruned_layers_written"] == exp["bytes"]["pruned_layers_format"]
    assert exp["bytes"]["safetensors_files"] < exp["bytes"]["source_safetensors_files"]

    # the model transformers builds from the export holds the same weights and scores the same
    a, _ = load_model(str(src))
    b, _ = load_model(str(out))
    assert _bit_identical(a.state_dict(), b.state_dict())
    if getattr(a.config, "tie_word_embeddings", False):
        assert b.get_output_embeddings().weight is b.get_input_embeddings().weight
    ids = _stream(vocab=a.config.vocab_size)
    pa = perplexity(a, ids, seqlen=20, progress=False)
    pb = perplexity(b, ids, seqlen=20, progress=False)
    assert pa["window_nll"] == pb["window_nll"] and pa["ppl"] == pb["ppl"]


def test_bfloat16_export_holds_the_cast_weights(pruned, tmp_path):
    src, out = pruned("llama", "unstructured"), tmp_path / "bf16"
    assert main(["export", "--model", str(src), "--out", str(out), "--dtype", "bfloat16"]) == 0
    cast = {k: v.to(torch.bfloat16) for k, v in load_file(src / "model.safetensors").items()}
    assert _bit_identical(decompressed_state_dict(out), cast)
    exp = json.loads((out / "export_report.json").read_text())
    assert exp["dtype"] == "bfloat16"
    assert exp["bytes"]["pruned_layers_written"] == exp["bytes"]["pruned_layers_format"]
    # loaded in bfloat16 as transformers loads the dense checkpoint in bfloat16: the same
    # parameters and buffers (its rotary frequencies stay float32), the same logits
    a, _ = load_model(str(src), dtype=torch.bfloat16)
    b, _ = load_model(str(out), dtype=torch.bfloat16)
    assert _bit_identical(a.state_dict(), b.state_dict())
    assert _bit_identical(dict(a.named_buffers()), dict(b.named_buffers()))
    ids = _stream(vocab=a.config.vocab_size)[None, :40]
    with torch.no_grad():
        assert torch.equal(a(input_ids=ids).logits, b(input_ids=ids).logits)
    # and in float32: the stored bfloat16 values, widened
    c, _ = load_model(str(out), dtype=torch.float32)
    assert _bit_identical({k: v.float() for k, v in a.state_dict().items()}, c.state_dict())


def test_a_pattern_without_a_2_4_layout_falls_back_to_the_bitmask(pruned, tmp_path):
    src, out = pruned("llama", "4:8"), tmp_path / "auto"
    assert main(["export", "--model", str(src), "--out", str(out)]) == 0
    assert sparsity_config(json.loads((out / "config.json").read_text()))["format"] == BITMASK
    assert _bit_identical(decompressed_state_dict(out), load_file(src / "model.safetensors"))


def test_export_in_place_replaces_the_dense_checkpoint(pruned, tmp_path):
    folder = shutil.copytree(pruned("opt", "2:4"), tmp_path / "in-place")
    dense = load_file(folder / "model.safetensors")
    assert main(["export", "--model", str(folder), "--out", str(folder)]) == 2  # needs --force
    assert main(["export", "--model", str(folder), "--out", str(folder), "--force"]) == 0
    assert is_compressed(folder)
    assert _bit_identical(decompressed_state_dict(folder), dense)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in-place"]


def test_stored_bytes_follows_the_formats():
    # 8 x 16 weights, 40 non-zeros, float32: values, one mask bit per weight, row offsets, shape
    assert stored_bytes(None, (8, 16), 40, 4) == 8 * 16 * 4
    assert stored_bytes(BITMASK, (8, 16), 40, 4) == 40 * 4 + 8 * 2 + 8 * 8 + 16
    assert stored_bytes(SPARSE_24, (8, 16), 64, 2) == 64 * 2 + 8 * 2 + 16


@pytest.fixture
def no_compression(monkeypatch):
    """Errors must come before anything is compressed."""
    from compressed_tensors.compressors import ModelCompressor

    def refuse(*a, **k):
        raise AssertionError("compression started despite bad input")

    monkeypatch.setattr(ModelCompressor, "compress", refuse)


@pytest.mark.parametrize("case,message", [
    ("nm_format", "pruned 4:8, and only 2:4"),
    ("conv1d", "Conv1D"),
    ("no_report", "no prune_report.json"),
    ("not_sparse", "the checkpoint is not the pruned one"),
    ("not_pattern", "not 2:4 sparse"),
    ("fp16_range", "beyond its range"),
    ("stored_dtype", "weights stored as int8"),
    ("exists", "exists; remove it or pass --force"),
    ("again", "already exported"),
    ("format", "unknown; known"),
])
def test_bad_input_is_refused_before_compressing(case, message, pruned, tiny_model_dir, tmp_path,
                                                 capsys, no_compression):
    out = tmp_path / "out"
    extra = []
    if case == "nm_format":
        src, extra = pruned("llama", "4:8"), ["--format", SPARSE_24]
    elif case == "conv1d":
        src, extra = pruned("gpt2", "2:4"), ["--format", SPARSE_24]
    elif case == "no_report":
        src = tiny_model_dir("llama")
    elif case in ("not_sparse", "not_pattern"):
        # a report that claims more than the weights hold
        src = shutil.copytree(tiny_model_dir("llama"), tmp_path / "claims")
        pattern = "unstructured" if case == "not_sparse" else "2:4"
        shutil.copy(pruned("llama", pattern) / "prune_report.json", src)
        if case == "not_pattern":  # as sparse as claimed, but not in 2:4 groups
            weights = load_file(src / "model.safetensors")
            for key, w in weights.items():
                if key.endswith("proj.weight"):
                    w.view(-1)[: w.numel() // 2] = 0
                    w.view(-1)[w.numel() // 2:] = 1.0
            save_file(weights, src / "model.safetensors", metadata={"format": "pt"})
    elif case == "fp16_range":
        src = shutil.copytree(pruned("llama", "2:4"), tmp_path / "big")
        weights = load_file(src / "model.safetensors")
        weights["model.norm.weight"][0] = 1e6
        save_file(weights, src / "model.safetensors", metadata={"format": "pt"})
        extra = ["--dtype", "float16"]
    elif case == "stored_dtype":
        src = shutil.copytree(pruned("llama", "2:4"), tmp_path / "int8")
        config = json.loads((src / "config.json").read_text())
        config["dtype"] = "int8"
        (src / "config.json").write_text(json.dumps(config))
    elif case == "exists":
        src = pruned("llama", "2:4")
        out.mkdir()
    elif case == "again":
        src = pruned("llama", "2:4")
        first = shutil.copytree(src, tmp_path / "first")
        config = json.loads((first / "config.json").read_text())
        config["quantization_config"] = {"quant_method": "compressed-tensors",
                                         "sparsity_config": {"format": BITMASK}}
        (first / "config.json").write_text(json.dumps(config))
        src = first
    elif case == "format":
        src = pruned("llama", "2:4")
        (tmp_path / "c.yaml").write_text("format: dense\n")
        extra = ["--config", str(tmp_path / "c.yaml")]
    assert main(["export", "--model", str(src), "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.glob("out.partial*"))
    if case != "exists":
        assert not out.exists()


def test_a_sparsity_format_apt_does_not_know_is_refused(pruned, tmp_path):
    from apt.errors import AptError

    folder = shutil.copytree(pruned("llama", "2:4"), tmp_path / "odd")
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "compressed-tensors",
                                     "sparsity_config": {"format": "some.module:Class"}}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(AptError, match="not one apt reads"):
        load_model(str(folder))
