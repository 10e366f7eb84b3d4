import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_tiny_model_loads_by_path(tiny_model_dir, family):
    path = tiny_model_dir(family)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok("the quick brown fox", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape[:2] == ids.shape
    assert torch.isfinite(logits).all()
