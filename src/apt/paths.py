"""Where the project keeps downloaded assets and caches.

The offline assets (``wheels/``: the pinned downloads, ``models/<name>/``: HF folders,
``text/<name>.txt``, ``tasks/``: zero-shot data) live in one folder, found the same way from any
working directory: ``$APT_RESOURCES`` if set, else the user's cache folder for ``apt``
(``~/.cache/apt`` on Linux, ``$XDG_CACHE_HOME/apt`` where that is set). The pipeline sets
``APT_RESOURCES`` to the repository's ``resources/`` for its jobs, so a run is self-contained.
``$APT_CACHE`` (default ``<resources>/cache``) holds derived data such as tokenized texts.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def resources_dir() -> Path:
    env = os.environ.get("APT_RESOURCES")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("apt", appauthor=False))


def cache_dir() -> Path:
    env = os.environ.get("APT_CACHE")
    return Path(env).expanduser().resolve() if env else resources_dir() / "cache"
