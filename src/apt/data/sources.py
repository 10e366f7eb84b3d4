"""Named sources of models and texts, for both worlds: the hub and the offline assets.

INTERFACE (stable, other modules rely on it):
- ``resolve_model(name) -> str``: a local folder path or a hub id, for ``from_pretrained``.
- ``load_documents(name, split) -> list[str]``: the documents of a text dataset.
- ``load_text(name, split) -> str``: the documents joined as the standard protocol says.
- ``KNOWN_MODELS``, ``KNOWN_DATASETS``: the names, listed in error messages.
Unknown names raise :class:`apt.errors.AptError` listing the known ones.

(Stub: only local folders and local text files so far; the offline assets and the hub datasets
are to be filled in by the data issue.)
"""

from __future__ import annotations

from pathlib import Path

from apt.errors import AptError

KNOWN_MODELS: dict[str, str] = {}
KNOWN_DATASETS: dict[str, str] = {}


def resolve_model(name: str) -> str:
    p = Path(name)
    if p.is_dir():
        return str(p.resolve())
    raise AptError(f"unknown model {name!r}: not a folder; known names: "
                   f"{', '.join(KNOWN_MODELS) or '(none)'}")


def load_documents(name: str, split: str = "test") -> list[str]:
    p = Path(name)
    if p.is_file():
        return [d for d in p.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    raise AptError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS) or '(none)'}, "
                   "or a path to a text file")


def load_text(name: str, split: str = "test") -> str:
    return "\n\n".join(load_documents(name, split))
