"""Turn a GGUF checkpoint into a plain Hugging Face folder (dequantized, no quantizer attached).

transformers reads GGUF files and dequantizes them on load, but the model it returns still
carries ``config.quantization_config`` (``quant_method: gguf``) and a quantizer marker; a folder
saved from it would ask for the GGUF path again when loaded. :func:`strip_quantization` removes
both, so the saved folder loads like any other HF model, offline.
"""

from __future__ import annotations

from pathlib import Path


def strip_quantization(model) -> None:
    """Remove every trace of a quantizer from ``model`` and its config, in place."""
    config = model.config
    if hasattr(config, "quantization_config"):
        try:
            del config.quantization_config
        except AttributeError:
            config.quantization_config = None
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    if getattr(config, "_model_name_or_path", None) is not None:
        config._model_name_or_path = ""


def convert_gguf(gguf_path: str | Path, dest: str | Path) -> dict:
    """Load ``gguf_path`` with transformers, strip the quantizer, save model + tokenizer to ``dest``.

    ``dest`` must be a fresh folder (the caller makes it atomic). Returns a summary of the model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    strip_quantization(model)
    model.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))
    return {
        "model_type": model.config.model_type,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "vocab_size": len(tokenizer),
    }
