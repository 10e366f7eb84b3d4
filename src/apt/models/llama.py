"""The LLaMA family (Llama 1/2/3, SmolLM2, Mistral, Qwen2): pre-norm blocks with rotary
embeddings and grouped-query attention (k/v projections may be narrower than q)."""

from apt.models.base import Adapter

ADAPTER = Adapter(
    family="llama",
    model_types=("llama", "mistral", "qwen2"),
    blocks_path="model.layers",
    pre_paths=("model.embed_tokens", "model.rotary_emb"),
    head_paths=("model.norm", "lm_head"),
    groups=(
        ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        ("self_attn.o_proj",),
        ("mlp.gate_proj", "mlp.up_proj"),
        ("mlp.down_proj",),
    ),
)
