"""``config.model_type`` -> adapter. Adding a family: one module with an ``ADAPTER`` and one
entry in :data:`FAMILIES`."""

from __future__ import annotations

from apt.errors import AptError
from apt.models import gemma3, gpt2, llama, mamba, opt
from apt.models.base import Adapter

FAMILIES: tuple[Adapter, ...] = (llama.ADAPTER, opt.ADAPTER, gpt2.ADAPTER, mamba.ADAPTER,
                                 gemma3.ADAPTER)

ADAPTERS: dict[str, Adapter] = {t: a for a in FAMILIES for t in a.model_types}


def supported_model_types() -> list[str]:
    return sorted(ADAPTERS)


def adapter_for(model_or_config) -> Adapter:
    """The adapter for a model (or its config); AptError naming the supported types otherwise."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        raise AptError(f"unsupported architecture {model_type!r}; supported model types: "
                       f"{', '.join(supported_model_types())}")
    return ADAPTERS[model_type]
