"""Calibration sampling: seeded, contiguous windows, the reference rule, caching, `apt calib`."""

from __future__ import annotations

import random

import pytest
import torch

from apt.data import calibration, sources
from apt.errors import AptError
from tiny_models import TINY_TEXT, make_tokenizer

WORDS = TINY_TEXT.split()


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("APT_RESOURCES", str(tmp_path / "res"))
    monkeypatch.setenv("APT_CACHE", str(tmp_path / "cache"))


def _doc(i: int, nwords: int) -> str:
    rng = random.Random(i)
    return " ".join(rng.choice(WORDS) for _ in range(nwords))


def _text_file(path, nwords_per_doc):
    path.write_text("\n\n".join(_doc(i, n) for i, n in enumerate(nwords_per_doc)) + "\n")
    return str(path)


def _is_slice(window: torch.Tensor, seq: torch.Tensor) -> bool:
    n = window.numel()
    return any(torch.equal(seq[s:s + n], window) for s in range(seq.numel() - n + 1))


def test_stream_windows_are_seeded_contiguous_slices(tok, tmp_path):
    path = _text_file(tmp_path / "short.txt", [4] * 60)  # short documents -> stream rule
    a, info = calibration.sample_calibration_with_info(tok, path, 6, 32, seed=0)
    assert info["rule"] == "stream" and a.shape == (6, 32) and a.dtype == torch.long
    assert torch.equal(a, calibration.sample_calibration(tok, path, 6, 32, seed=0))
    assert not torch.equal(a, calibration.sample_calibration(tok, path, 6, 32, seed=1))
    stream = tok(sources.load_text(path, "train"), return_tensors="pt").input_ids[0]
    assert all(_is_slice(w, stream) for w in a)


def test_document_rule_windows_come_from_one_long_document(tok, tmp_path):
    lengths = [5, 80, 6, 90, 4, 100, 7, 120]
    path = _text_file(tmp_path / "long.txt", lengths)
    out, info = calibration.sample_calibration_with_info(tok, path, 4, 24, seed=3)
    assert info["rule"] == "documents"
    docs = [tok(d, return_tensors="pt").input_ids[0] for d in sources.load_documents(path)]
    for w in out:
        assert any(d.numel() > 24 and _is_slice(w, d) for d in docs)
    assert not torch.equal(out, calibration.sample_calibration(tok, path, 4, 24, seed=4))


def test_document_rule_matches_the_reference_loop():
    """Same windows as SparseGPT/Wanda's loop on the global `random` after random.seed(seed)."""
    docs = [torch.arange(n) + 1000 * i for i, n in enumerate([3, 50, 8, 70, 20, 65])]
    nsamples, seqlen, seed = 5, 16, 7
    random.seed(seed)
    ref = []
    for _ in range(nsamples):
        while True:
            i = random.randint(0, len(docs) - 1)
            if docs[i].numel() > seqlen:
                break
        j = random.randint(0, docs[i].numel() - seqlen - 1)
        ref.append(docs[i][j:j + seqlen])
    assert torch.equal(calibration.windows_from_documents(docs, nsamples, seqlen, seed),
                       torch.stack(ref))


def test_auto_rule_choice():
    assert calibration.choose_rule([10, 300, 400], nsamples=2, seqlen=256) == "documents"
    assert calibration.choose_rule([10, 300, 100], nsamples=2, seqlen=256) == "stream"
    assert calibration.choose_rule([256, 256], nsamples=1, seqlen=256) == "stream"  # not > seqlen


def test_too_little_text_is_an_error(tok, tmp_path):
    path = _text_file(tmp_path / "tiny.txt", [5, 5])
    with pytest.raises(AptError, match="not more than one window of 512"):
        calibration.sample_calibration(tok, path, 2, 512, seed=0)
    with pytest.raises(AptError, match="positive"):
        calibration.sample_calibration(tok, path, 0, 8, seed=0)


def test_tokenized_text_is_cached_and_bad_cache_is_rebuilt(tok, tmp_path):
    path = _text_file(tmp_path / "c.txt", [4] * 40)
    first = calibration.tokenize_stream(tok, path, "train")
    cached = list((tmp_path / "cache" / "tokens").glob("c.txt-train-stream-*.pt"))
    assert len(cached) == 1
    cached[0].write_bytes(b"not a tensor")
    assert torch.equal(calibration.tokenize_stream(tok, path, "train"), first)
    # a changed text is a different cache entry
    _text_file(tmp_path / "c.txt", [5] * 40)
    assert not torch.equal(calibration.tokenize_stream(tok, path, "train"), first)


def test_offline_splits_do_not_share_windows(tok, tmp_path):
    text = tmp_path / "res" / "text" / "wiki.txt"
    text.parent.mkdir(parents=True)
    _text_file(text, [4] * 60)
    train = calibration.sample_calibration(tok, "wiki", 4, 16, seed=0)
    test_stream = calibration.tokenize_stream(tok, "wiki", "test")
    train_stream = calibration.tokenize_stream(tok, "wiki", "train")
    assert all(_is_slice(w, train_stream) for w in train)
    assert test_stream.numel() < train_stream.numel()


def test_cache_follows_the_split_rule(tok, tmp_path, monkeypatch):
    text = tmp_path / "res" / "text" / "wiki.txt"
    text.parent.mkdir(parents=True)
    _text_file(text, [4] * 40)
    before = calibration.tokenize_documents(tok, "wiki", "test")
    monkeypatch.setattr(sources, "TEST_FRACTION", 0.5)  # same file, another split
    after = calibration.tokenize_documents(tok, "wiki", "test")
    assert len(after) == len(sources.load_documents("wiki", "test")) > len(before)


def test_hub_c4_uses_the_document_rule(tok, monkeypatch):
    docs = [_doc(i, n) for i, n in enumerate([4, 60, 5, 70])]
    monkeypatch.setattr(sources, "_load_hub_dataset",
                        lambda path, name, split, data_files=None: {"text": docs})
    out, info = calibration.sample_calibration_with_info(tok, "c4", 3, 20, seed=0)
    assert info["rule"] == "documents" and out.shape == (3, 20)
    ids = [tok(d, return_tensors="pt").input_ids[0] for d in docs]
    assert all(any(_is_slice(w, d) for d in ids) for w in out)


def test_calib_command_writes_windows_and_settings(tiny_model_dir, tmp_path, capsys):
    from apt.cli import main

    text = _text_file(tmp_path / "t.txt", [4] * 60)
    out = tmp_path / "calib.pt"
    model = str(tiny_model_dir("llama"))
    argv = ["calib", "--model", model, "--dataset", text, "--nsamples", "3", "--seqlen", "16",
            "--seed", "5", "--out", str(out)]
    assert main(argv) == 0
    data = torch.load(out)
    assert data["input_ids"].shape == (3, 16)
    s = data["settings"]
    assert (s["nsamples"], s["seqlen"], s["seed"], s["rule"]) == (3, 16, 5, "stream")
    assert "packages" in s["environment"]
    too_long = argv[:-1] + [str(tmp_path / "long.pt"), "--seqlen", "257"]
    assert main(too_long) == 2  # the tiny llama has max_position_embeddings 256
    assert "max_position_embeddings 256" in capsys.readouterr().err
    assert not (tmp_path / "long.pt").exists()
