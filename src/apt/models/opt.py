"""OPT: learned positions (offset by 2), optional in/out projections of the embedding
(OPT-350M), optional final layer norm."""

from apt.models.base import Adapter

ADAPTER = Adapter(
    family="opt",
    model_types=("opt",),
    blocks_path="model.decoder.layers",
    pre_paths=("model.decoder.embed_tokens", "model.decoder.embed_positions",
               "model.decoder.project_in"),
    head_paths=("model.decoder.final_layer_norm", "model.decoder.project_out", "lm_head"),
    groups=(
        ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        ("self_attn.out_proj",),
        ("fc1",),
        ("fc2",),
    ),
)
