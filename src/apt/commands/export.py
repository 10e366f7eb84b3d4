"""`apt export`: write a pruned checkpoint in a compressed-tensors sparse format.

The pruned layers are stored as their non-zero values and a bitmask (``sparse-bitmask``), or
for 2:4 as half of each row and the bitmask (``sparse-24-bitmask``); ``--format compressed``
picks the 2:4 format when it applies and the bitmask format otherwise. The folder loads back
dense with ``apt eval`` (and :func:`apt.models.compressed.load_compressed`).
"""

from __future__ import annotations

import logging

from apt.errors import AptError

HELP = "write a pruned checkpoint in a sparse format (compressed-tensors bitmask or 2:4)"

log = logging.getLogger("apt.export")


def add_arguments(parser):
    from apt.engine.export import AUTO, DTYPES, FORMATS

    parser.add_argument("--model", help="the --out folder of `apt prune` (with prune_report.json)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--format", default=AUTO, choices=FORMATS,
                        help=f"{AUTO} (default): sparse-24-bitmask for a 2:4 checkpoint whose "
                             "layers store out x in rows, sparse-bitmask otherwise; or name one")
    parser.add_argument("--dtype", default=None, choices=DTYPES,
                        help="store the weights in this dtype (default: as the checkpoint)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")


def run(args) -> int:
    from apt.engine.export import ExportSettings, export_checkpoint

    for flag in ("model", "out"):
        if not getattr(args, flag, None):
            raise AptError(f"--{flag} is required")
    settings = ExportSettings(format=args.format, dtype=args.dtype)
    report = export_checkpoint(args.model, args.out, settings, force=bool(args.force))
    b = report["bytes"]
    log.info("wrote %s: %s, %s, %d layers; weight files %.2f MB (the dense checkpoint: %.2f MB)",
             args.out, report["format"], report["dtype"], report["layers"],
             b["safetensors_files"] / 1e6, b["source_safetensors_files"] / 1e6)
    return 0
