"""Where the project keeps downloaded assets and caches.

``APT_RESOURCES`` (default ``./resources``) holds the offline assets: ``wheels/`` (the pinned
downloads), ``models/<name>/`` (HF folders), ``text/<name>.txt`` and ``tasks/`` (zero-shot data).
``APT_CACHE`` (default ``<resources>/cache``) holds derived data such as tokenized texts.
"""

from __future__ import annotations

import os
from pathlib import Path


def resources_dir() -> Path:
    return Path(os.environ.get("APT_RESOURCES", "resources")).resolve()


def cache_dir() -> Path:
    env = os.environ.get("APT_CACHE")
    return Path(env).resolve() if env else resources_dir() / "cache"
