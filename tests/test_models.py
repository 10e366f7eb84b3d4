"""Family adapters and model loading: weights seen as out x in, clear errors for bad checkpoints."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from apt.errors import AptError
from apt.models import adapter_for, load_model, supported_model_types
from tiny_models import FAMILIES, make_config


def test_every_family_has_an_adapter(tiny_model_dir, family):
    model, tok = load_model(str(tiny_model_dir(family)))
    adapter = adapter_for(model)
    blocks = adapter.blocks(model)
    assert len(blocks) == model.config.num_hidden_layers
    assert adapter.prunable(blocks[0])
    assert tok is not None


def test_weights_are_out_by_in(tiny_model_dir, family):
    """``get_weight`` is the matrix the layer applies: y = x W^T + b (GPT-2 Conv1D included)."""
    model, _ = load_model(str(tiny_model_dir(family)))
    adapter = adapter_for(model)
    torch.manual_seed(0)
    for name, module in adapter.prunable(adapter.blocks(model)[0]).items():
        w = adapter.get_weight(module)
        x = torch.randn(5, w.shape[1])
        bias = getattr(module, "bias", None)
        expected = x @ w.t() + (0 if bias is None else bias)
        torch.testing.assert_close(module(x), expected, msg=name)


def test_embeddings_and_head_are_not_prunable(tiny_model_dir, family):
    model, _ = load_model(str(tiny_model_dir(family)))
    adapter = adapter_for(model)
    prunable = {id(m) for b in adapter.blocks(model) for m in adapter.prunable(b).values()}
    assert id(model.get_input_embeddings()) not in prunable
    assert id(model.get_output_embeddings()) not in prunable


def test_mamba_leaves_ssm_parameters_dense(tiny_model_dir):
    model, _ = load_model(str(tiny_model_dir("mamba")))
    adapter = adapter_for(model)
    names = set(adapter.prunable(adapter.blocks(model)[0]))
    assert names == {"mixer.in_proj", "mixer.x_proj", "mixer.dt_proj", "mixer.out_proj"}


def test_model_not_found(tmp_path):
    with pytest.raises(AptError, match="unknown model"):
        load_model(str(tmp_path / "nowhere"))


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_folder_without_config(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir("llama"), tmp_path / "m")
    (d / "config.json").unlink()
    with pytest.raises(AptError, match="no config.json"):
        load_model(str(d))


def test_corrupt_config(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir("llama"), tmp_path / "m")
    (d / "config.json").write_text("{not json")
    with pytest.raises(AptError, match="not valid JSON"):
        load_model(str(d))


def test_missing_weights(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir("llama"), tmp_path / "m")
    (d / "model.safetensors").unlink()
    with pytest.raises(AptError, match="no weights"):
        load_model(str(d))


@pytest.mark.parametrize("keep", [0.5, 0.999, 4])
def test_truncated_safetensors(tiny_model_dir, tmp_path, keep):
    d = _copy(tiny_model_dir("opt"), tmp_path / "m")
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(AptError, match="corrupt or truncated"):
        load_model(str(d))


def test_safetensors_missing_a_tensor(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir("gpt2"), tmp_path / "m")
    f = d / "model.safetensors"
    tensors = load_file(f)
    dropped = next(k for k in tensors if "mlp.c_fc.weight" in k)
    del tensors[dropped]
    save_file(tensors, f, metadata={"format": "pt"})
    with pytest.raises(AptError, match="lack"):
        load_model(str(d))


def test_missing_shard(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir("llama"), tmp_path / "m")
    (d / "model.safetensors").rename(d / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(AptError, match="missing weight shards"):
        load_model(str(d))


def test_unsupported_architecture_names_supported_ones(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir("llama"), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "gpt_neox"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(AptError, match="unsupported architecture") as err:
        load_model(str(d), require_adapter=True)
    for t in ("llama", "opt", "gpt2", "mamba", "qwen2", "mistral", "gemma3_text"):
        assert t in str(err.value)
    assert {make_config(f, 320).model_type for f in FAMILIES} <= set(supported_model_types())


def test_every_linear_of_a_block_is_prunable(tiny_model_dir, family):
    """No linear layer of a block is left out (Gemma 3's norms and scaled embedding are not linear)."""
    from torch import nn

    model, _ = load_model(str(tiny_model_dir(family)))
    adapter = adapter_for(model)
    for block in adapter.blocks(model):
        prunable = {id(m) for m in adapter.prunable(block).values()}
        linears = {id(m) for m in block.modules() if isinstance(m, nn.Linear)}
        assert linears <= prunable


def test_gemma3_blocks_get_the_mask_and_rotary_table_of_their_kind(tiny_model_dir):
    """The capture records what the model passes its first sliding and its first global block;
    the two differ (window mask vs causal mask, local vs global rotary base)."""
    from apt.engine.capture import _equal, capture_block_inputs

    model, _ = load_model(str(tiny_model_dir("gemma3")))
    adapter = adapter_for(model)
    kinds = model.config.layer_types
    assert kinds == ["sliding_attention", "full_attention"] and model.config.sliding_window < 16
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    inputs = capture_block_inputs(model, adapter, ids, "cpu")
    assert inputs.kinds == kinds and set(inputs.by_kind) == set(kinds)
    sliding, full = (inputs.by_kind[k][1][0] for k in kinds)
    assert not _equal(sliding["position_embeddings"], full["position_embeddings"])
    assert not _equal(sliding["attention_mask"], full["attention_mask"])
    # every block's forward is restored after the capture
    assert all("forward" not in vars(b) for b in adapter.blocks(model))
