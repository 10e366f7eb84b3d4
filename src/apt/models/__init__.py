"""Model families: one adapter per family (``llama``, ``opt``, ``gpt2``, ``mamba``, ``gemma3``)
and loading by source.

INTERFACE (stable): ``load_model(source, dtype=torch.float32, device="cpu") -> (model, tokenizer)``
where ``source`` is anything :func:`apt.data.sources.resolve_model` accepts; problems a user can
fix (not found, missing or corrupt files, unsupported architecture) raise
:class:`apt.errors.AptError` before any long work. ``adapter_for(model)`` gives the family
adapter the engine uses.
"""

from apt.models.base import Adapter
from apt.models.loading import check_folder, load_model
from apt.models.registry import ADAPTERS, adapter_for, supported_model_types

__all__ = ["Adapter", "ADAPTERS", "adapter_for", "check_folder", "load_model",
           "supported_model_types"]
