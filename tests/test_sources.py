"""Named sources: offline assets, local folders and files, hub ids and hub datasets (mocked)."""

from __future__ import annotations

import pytest

from apt.data import sources
from apt.errors import AptError


@pytest.fixture
def resources(tmp_path, monkeypatch):
    root = tmp_path / "res"
    monkeypatch.setenv("APT_RESOURCES", str(root))
    return root


def _write_docs(path, docs):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(docs) + "\n")


@pytest.mark.parametrize("name,asset", [("smollm2-135m", "model"), ("gemma3-270m", "gemma3")])
def test_offline_model_missing_says_run_assets(resources, name, asset):
    with pytest.raises(AptError, match=f"apt assets --only {asset}` first"):
        sources.resolve_model(name)


def test_offline_model_resolves_to_resources(resources):
    folder = resources / "models" / "smollm2-135m"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert sources.resolve_model("smollm2-135m") == str(folder)


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_local_folder_resolves_and_loads(tiny_model_dir, family):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = sources.resolve_model(str(tiny_model_dir(family)))
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok("The quick brown fox", return_tensors="pt").input_ids
    with torch.no_grad():
        assert model(ids).logits.shape == (1, ids.shape[1], len(tok))


def test_hub_ids_pass_through_and_unknown_names_list_known(resources, tmp_path):
    assert sources.resolve_model("facebook/opt-125m") == "facebook/opt-125m"
    for bad in ("opt125", "./not/there", str(tmp_path / "missing" / "dir")):
        with pytest.raises(AptError, match="known names: smollm2-135m"):
            sources.resolve_model(bad)


def test_unknown_dataset_lists_known(resources):
    with pytest.raises(AptError) as err:
        sources.load_documents("wikitext103", "test")
    for name in ("wiki", "c4-sample", "wikitext2", "ptb", "c4"):
        assert name in str(err.value)
    with pytest.raises(AptError, match="unknown split"):
        sources.load_documents("wiki", "validation")


def test_offline_text_missing_says_run_assets(resources):
    with pytest.raises(AptError, match="apt assets --only texts"):
        sources.load_text("wiki", "test")


def test_offline_splits_are_disjoint_document_level(resources):
    docs = [f"document {i}\nsecond line {i}" for i in range(25)]
    _write_docs(resources / "text" / "wiki.txt", docs)
    train = sources.load_documents("wiki", "train")
    test = sources.load_documents("wiki", "test")
    assert train + test == docs  # every document once, in order
    chars = sum(map(len, docs))
    assert sum(map(len, test)) >= sources.TEST_FRACTION * chars  # at least 10 % of the text...
    assert sum(map(len, test[1:])) < sources.TEST_FRACTION * chars  # ...and no more documents
    assert sources.load_text("wiki", "test") == "\n\n".join(test)


def test_split_is_by_text_mass_not_document_count():
    docs = ["stub"] * 30 + ["long article " * 100] * 3 + ["stub"] * 30
    test = sources.split_by_document(docs, "test")
    assert test[0].startswith("long article") and len(test) == 31


def test_local_text_file_is_split_on_blank_lines(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("one\nstill one\n\n\ntwo\n  \nthree\n")
    assert sources.load_documents(str(path), "train") == ["one\nstill one", "two", "three"]
    assert sources.load_documents(str(path), "test") == sources.load_documents(str(path), "train")


@pytest.fixture
def fake_hub(monkeypatch):
    """Replace the one `datasets` call; record the arguments it got."""
    calls = []

    def load(path, name, split, data_files=None):
        calls.append((path, name, split, data_files))
        if path == "allenai/c4":  # a real `datasets.Dataset`, whose columns are lazy
            from datasets import Dataset

            return Dataset.from_dict({"text": [f"{split} doc {i}" for i in range(1500)]})
        column = "sentence" if path == "ptb_text_only" else "text"
        return {column: [f"{split} row 1", "", f"{split} row 2"]}

    monkeypatch.setattr(sources, "_load_hub_dataset", load)
    return calls


def test_hub_datasets_follow_the_protocol(fake_hub):
    assert sources.load_text("wikitext2", "test") == "test row 1\n\n\n\ntest row 2"
    assert fake_hub[-1] == ("wikitext", "wikitext-2-raw-v1", "test", None)
    assert sources.load_text("wikitext2", "train") == "train row 1  train row 2"
    assert sources.load_text("ptb", "test") == "test row 1  test row 2"
    assert fake_hub[-1][:3] == ("ptb_text_only", "penn_treebank", "test")

    test = sources.load_documents("c4", "test")
    assert len(test) == 1100 and test[-1] == "validation doc 1099"
    assert fake_hub[-1] == ("allenai/c4", None, "validation",
                            {"validation": "en/c4-validation.00000-of-00008.json.gz"})
    assert sources.load_text("c4", "test") == " ".join(test)
    assert len(sources.load_documents("c4", "train")) == 1500
    assert fake_hub[-1][3] == {"train": "en/c4-train.00000-of-01024.json.gz"}


def test_hub_failure_is_a_clear_error(monkeypatch):
    import datasets

    def fail(*a, **k):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(AptError, match="wikitext.*no route.*offline dataset: wiki, c4-sample"):
        sources.load_text("wikitext2", "test")


# ------------------------------------------------------------------ where the assets live
def test_resources_default_is_the_user_cache_whatever_the_working_directory(tmp_path,
                                                                             monkeypatch):
    from apt.paths import resources_dir
    monkeypatch.delenv("APT_RESOURCES", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    seen = set()
    for cwd in (tmp_path, tmp_path / "elsewhere"):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        seen.add(resources_dir())
    assert seen == {tmp_path / "xdg" / "apt"}
    monkeypatch.setenv("APT_RESOURCES", "rel")        # an override is resolved once, absolute
    assert resources_dir() == (tmp_path / "elsewhere" / "rel")


def test_apt_command_finds_offline_text_from_another_directory(tmp_path, tiny_model_dir,
                                                               tiny_text_file):
    """The `apt` command, run from a folder with no resources/, reads the text asset from the
    user cache (as `apt assets` would have built it there)."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "xdg"
    (cache / "apt" / "text").mkdir(parents=True)
    docs = [tiny_text_file.read_text().strip()] * 12               # documents: a train split
    (cache / "apt" / "text" / "wiki.txt").write_text("\n\n".join(docs) + "\n")
    work = tmp_path / "somewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("APT_RESOURCES", "APT_CACHE")}
    env["XDG_CACHE_HOME"] = str(cache)
    out = work / "calib.pt"
    cmd = [sys.executable, "-m", "apt", "calib", "--model", str(tiny_model_dir("llama")),
           "--dataset", "wiki", "--nsamples", "2", "--seqlen", "16", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    env["XDG_CACHE_HOME"] = str(tmp_path / "empty")          # and without it: what to do
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "apt assets --only texts" in proc.stderr
