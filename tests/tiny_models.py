"""Tiny randomly initialised models of each supported family, saved as HF folders, for tests.

Every family gets the same small byte-level BPE tokenizer (trained here on a fixed text) so
that tests run offline in seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_TEXT = (
    "The quick brown fox jumps over the lazy dog. Pruning removes weights from a network. "
    "A language model predicts the next token from the tokens before it. "
    "Calibration data gives the inputs of every layer; the Hessian of a layer is built from them. "
) * 4

FAMILIES = ("llama", "opt", "gpt2", "mamba", "qwen2", "gemma3")


def make_tokenizer(vocab_size: int = 320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([TINY_TEXT], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>")


def make_config(family: str, vocab_size: int, hidden: int = 64, layers: int = 2,
                max_positions: int = 256):
    import transformers as tf

    if family == "llama":
        return tf.LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                              num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                              max_position_embeddings=max_positions, tie_word_embeddings=True)
    if family == "qwen2":
        return tf.Qwen2Config(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                              num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                              max_position_embeddings=max_positions)
    if family == "opt":
        return tf.OPTConfig(vocab_size=vocab_size, hidden_size=hidden, ffn_dim=2 * hidden,
                            num_hidden_layers=layers, num_attention_heads=4,
                            max_position_embeddings=max_positions, word_embed_proj_dim=hidden)
    if family == "gpt2":
        return tf.GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=4,
                             n_positions=max_positions)
    if family == "mamba":
        return tf.MambaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                              state_size=8, expand=2, conv_kernel=4)
    if family == "gemma3":
        # sliding-window and global layers alternate; the window (8) is shorter than the test
        # sequences, and the two kinds use different rotary bases, so a block given the other
        # kind's mask or rotary table computes something else
        return tf.Gemma3TextConfig(vocab_size=vocab_size, hidden_size=hidden,
                                   intermediate_size=2 * hidden, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                   query_pre_attn_scalar=16, sliding_window=8,
                                   layer_types=["sliding_attention", "full_attention"]
                                   * (layers // 2) + ["sliding_attention"] * (layers % 2),
                                   max_position_embeddings=max_positions)
    raise ValueError(f"unknown tiny family {family!r}; known: {FAMILIES}")


def make_tiny_model(family: str, path: str | Path, seed: int = 0, **config_kwargs) -> Path:
    """Create, save and return a folder with a tiny random ``family`` model and its tokenizer."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    tok = make_tokenizer()
    config = make_config(family, len(tok), **config_kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
