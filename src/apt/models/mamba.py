"""Mamba (transformers' ``MambaForCausalLM``): the linear projections of each mixer are pruned,
``conv1d``, ``A_log``, ``D`` and the norms stay dense (docs/method.md). The residual connection
is inside the block. transformers uses mamba-ssm's CUDA kernels by itself when they import; on
CPU it runs its own (slow) scan.

``dt_proj`` is applied as ``dt_proj.weight @ time_step`` inside the mixer, so its own forward is
never called; its input (the first ``time_step_rank`` outputs of ``x_proj``) is read from
``x_proj``'s forward instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from apt.models.base import Adapter, TapFn


@dataclass(frozen=True)
class MambaAdapter(Adapter):
    def input_taps(self, block: nn.Module) -> dict[str, tuple[nn.Module, TapFn]]:
        mixer = block.mixer
        rank = mixer.dt_proj.in_features

        def dt_input(_inputs, output):
            return output[..., :rank]

        return {"mixer.dt_proj": (mixer.x_proj, dt_input)}


ADAPTER = MambaAdapter(
    family="mamba",
    model_types=("mamba",),
    blocks_path="backbone.layers",
    pre_paths=("backbone.embeddings",),
    head_paths=("backbone.norm_f", "lm_head"),
    groups=(("mixer.in_proj",), ("mixer.x_proj",), ("mixer.dt_proj",), ("mixer.out_proj",)),
)
