"""Perplexity: the standard protocol, checked against hand computations and transformers' loss."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from apt.errors import AptError
from apt.eval.perplexity import dataset_tokens, perplexity, tokenize_text


class BigramModel(torch.nn.Module):
    """Logits at position t are log P[x_t, :]: the NLL of any text is known in closed form."""

    def __init__(self, probs: torch.Tensor, context: int = 64):
        super().__init__()
        self.logp = torch.nn.Parameter(probs.log(), requires_grad=False)
        self.config = SimpleNamespace(max_position_embeddings=context)

    def forward(self, input_ids, **kwargs):
        return SimpleNamespace(logits=self.logp[input_ids])


def _bigram(vocab=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(vocab, vocab, generator=g, dtype=torch.float64) + 0.05
    return probs / probs.sum(1, keepdim=True)


def _hand_nll(probs, ids, seqlen, windows):
    """Mean NLL over the seqlen-1 in-window predictions of each of the first ``windows`` windows."""
    total, count = 0.0, 0
    for w in range(windows):
        win = ids[w * seqlen:(w + 1) * seqlen]
        for a, b in zip(win[:-1], win[1:]):
            total -= math.log(probs[a, b].item())
            count += 1
    return total / count


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_matches_hand_computation(batch_size):
    probs = _bigram()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 7, (23,), generator=g)  # 4 windows of 5, tail of 3 dropped
    res = perplexity(BigramModel(probs), ids, seqlen=5, batch_size=batch_size, progress=False)
    expected = _hand_nll(probs, ids.tolist(), 5, 4)
    assert res["windows"] == 4 and res["tokens"] == 16 and res["tokens_in_windows"] == 20
    assert res["nll_mean"] == pytest.approx(expected, rel=1e-6)
    assert res["ppl"] == pytest.approx(math.exp(expected), rel=1e-6)


def test_max_windows_and_reference_convention():
    probs = _bigram(seed=3)
    ids = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(2))
    res = perplexity(BigramModel(probs), ids, seqlen=8, max_windows=2, progress=False)
    assert res["windows"] == 2 and res["windows_available"] == 6
    assert res["nll_mean"] == pytest.approx(_hand_nll(probs, ids.tolist(), 8, 2), rel=1e-6)
    # SparseGPT/Wanda: exp(sum_w mean_w * L / (n * L)) == exp(mean over windows of window means)
    window_means = torch.tensor(res["window_nll"], dtype=torch.float64) / 7
    ref = math.exp(float((window_means * 8).sum() / (2 * 8)))
    assert res["ppl"] == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("fam", ["llama", "opt", "gpt2", "mamba", "gemma3"])
def test_equals_transformers_loss(tiny_model_dir, tiny_text_file, fam):
    from apt.models import load_model

    model, tok = load_model(str(tiny_model_dir(fam)))
    ids = tokenize_text(tok, tiny_text_file.read_text())
    seqlen, n = 32, 5
    res = perplexity(model, ids, seqlen, batch_size=2, max_windows=n, progress=False)
    windows = ids[: n * seqlen].view(n, seqlen)
    with torch.no_grad():
        loss = model(input_ids=windows, labels=windows).loss  # mean over all n*(L-1) predictions
    assert res["ppl"] == pytest.approx(math.exp(loss.item()), rel=1e-5)


def test_bad_inputs(tiny_model_dir):
    model = BigramModel(_bigram(), context=16)
    ids = torch.arange(7) % 7
    with pytest.raises(AptError, match="longer than the model's context of 16"):
        perplexity(model, ids, seqlen=32, progress=False)
    with pytest.raises(AptError, match="shorter than one window"):
        perplexity(model, ids, seqlen=8, progress=False)
    with pytest.raises(AptError, match="at least 2"):
        perplexity(model, ids, seqlen=1, progress=False)
    with pytest.raises(AptError, match="batch-size"):
        perplexity(model, ids, seqlen=4, batch_size=0, progress=False)
    from apt.models import load_model

    _, tok = load_model(str(tiny_model_dir("llama")))
    with pytest.raises(AptError, match="known"):
        dataset_tokens(tok, "no-such-dataset", 16, cache=False)


def test_token_cache(tmp_path, tiny_model_dir, tiny_text_file):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    text = tiny_text_file.read_text()
    first = tokenize_text(tok, text, tmp_path)
    files = list((tmp_path / "tokens").glob("*.pt"))
    assert len(files) == 1
    assert torch.equal(tokenize_text(tok, text, tmp_path), first)
    files[0].write_bytes(b"damaged")  # a damaged entry is rebuilt, not trusted
    assert torch.equal(tokenize_text(tok, text, tmp_path), tok(text, return_tensors="pt").input_ids[0])
    tokenize_text(tok, text + " more", tmp_path)  # a different text gets its own entry
    assert len(list((tmp_path / "tokens").glob("*.pt"))) == 2


def _apt(capsys, *args):
    from apt.cli import main

    capsys.readouterr()
    rc = main(list(args))
    return SimpleNamespace(returncode=rc, stderr=capsys.readouterr().err)


def test_cli_ppl_writes_metrics(tmp_path, tiny_model_dir, tiny_text_file, capsys, monkeypatch):
    from apt.models import load_model

    monkeypatch.setenv("APT_CACHE", str(tmp_path / "cache"))
    model_dir = tiny_model_dir("llama")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"model: {model_dir}\nseqlen: 32\nmax-windows: 3\n")
    out = tmp_path / "m" / "ppl.json"
    res = _apt(capsys, "eval", "ppl", "--config", str(cfg), "--dataset", str(tiny_text_file),
               "--batch-size", "2", "--out", str(out))
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["windows"] == 3 and data["settings"]["seqlen"] == 32
    assert data["environment"]["packages"]["torch"]
    model, tok = load_model(str(model_dir))
    direct = perplexity(model, tokenize_text(tok, tiny_text_file.read_text()), 32, max_windows=3,
                        progress=False)
    assert data["ppl"] == pytest.approx(direct["ppl"], rel=1e-6)

    bad = _apt(capsys, "eval", "ppl", "--model", str(model_dir), "--dataset", str(tiny_text_file),
               "--seqlen", "1024", "--out", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "context of 256" in bad.stderr
    assert not (tmp_path / "bad.json").exists()
    unknown = _apt(capsys, "eval", "ppl", "--model", str(model_dir), "--dataset", "no-such-set",
                   "--seqlen", "16", "--out", str(tmp_path / "u.json"))
    assert unknown.returncode == 2 and "unknown dataset 'no-such-set'; known" in unknown.stderr
    missing = _apt(capsys, "eval", "ppl", "--model", str(model_dir), "--out", str(tmp_path / "x.json"))
    assert missing.returncode == 2 and "--dataset" in missing.stderr


def test_a_device_other_than_the_models_is_refused_with_what_to_do(tiny_model_dir):
    from apt.models import load_model

    model, _ = load_model(str(tiny_model_dir("llama")))
    ids = torch.arange(130) % 300
    with pytest.raises(AptError, match=r"model is on cpu but device=meta.*load_model"):
        perplexity(model, ids, seqlen=64, device="meta", progress=False)
    # the model's own device, named or not, is fine
    assert perplexity(model, ids, seqlen=64, device="cpu", progress=False)["windows"] == 2


@pytest.mark.parametrize("fam", ["llama", "opt", "gpt2", "mamba", "gemma3"])
@pytest.mark.parametrize("positions", [1, 5, 64])
def test_chunked_loss_equals_the_loss_from_full_logits(tiny_model_dir, fam, positions):
    """Slices of 1, 5 (uneven) or all positions give the NLLs of the full logits."""
    from apt.eval.perplexity import chunked_window_nlls, window_nlls
    from apt.models import load_model

    model, _ = load_model(str(tiny_model_dir(fam)))
    windows = torch.randint(0, 300, (3, 16), generator=torch.Generator().manual_seed(4))
    vocab = model.get_output_embeddings().weight.shape[0]
    with torch.no_grad():
        full = window_nlls(model(input_ids=windows).logits, windows)
        chunked = chunked_window_nlls(model, windows, budget=positions * 3 * vocab)
        again = model(input_ids=windows).logits  # the stop at the output layer is gone
    torch.testing.assert_close(chunked, full, rtol=1e-6, atol=1e-6)
    assert again.shape == (3, 16, vocab)


def test_chunked_loss_applies_the_final_soft_capping(tiny_model_dir):
    from apt.eval.perplexity import chunked_window_nlls, window_nlls
    from apt.models import load_model

    model, _ = load_model(str(tiny_model_dir("gemma3")))
    model.config.final_logit_softcapping = 0.5  # small enough to change every NLL
    windows = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        capped = window_nlls(model(input_ids=windows).logits, windows)
        chunked = chunked_window_nlls(model, windows, budget=4 * 2 * model.config.vocab_size)
    model.config.final_logit_softcapping = None
    with torch.no_grad():
        plain = window_nlls(model(input_ids=windows).logits, windows)
    torch.testing.assert_close(chunked, capped, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(capped, plain)
