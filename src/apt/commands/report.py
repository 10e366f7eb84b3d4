"""`apt report`: aggregate metrics JSONs into paper-style tables, plots and a summary file."""

from __future__ import annotations

import logging

from apt.errors import AptError

HELP = "aggregate metrics JSONs into tables (Markdown, CSV, LaTeX), plots and a summary JSON"

log = logging.getLogger("apt.report")


def add_arguments(parser):
    parser.add_argument("--metrics", nargs="+", metavar="PATH",
                        help="metrics JSONs (apt eval outputs, prune reports) or folders of them")
    parser.add_argument("--out-dir", default=None, metavar="DIR",
                        help="tables: ppl, zeroshot, (with dense, SparseGPT and APT) gap and (with "
                        "APT and another model evaluated zero-shot) zeroshot-diff, "
                        "each as .md/.csv/.tex")
    parser.add_argument("--plots-dir", default=None, metavar="DIR",
                        help="plots: <model>-ppl.png and <model>-acc.png")
    parser.add_argument("--summary", default=None, metavar="FILE.json",
                        help="nested figures for `dvc metrics show`")


def run(args) -> int:
    from apt.report import build_report

    if not args.metrics:
        raise AptError("--metrics is required (files or folders)")
    if not (args.out_dir or args.plots_dir or args.summary):
        raise AptError("nothing to write: give --out-dir, --plots-dir and/or --summary")
    written = build_report(args.metrics, args.out_dir, args.plots_dir, args.summary)
    for kind, paths in written.items():
        for p in paths:
            log.info("%s: %s", kind, p)
    if args.out_dir and (args.out_dir.rstrip("/") + "/ppl.md") in written["tables"]:
        print(open(args.out_dir.rstrip("/") + "/ppl.md").read())
    return 0
