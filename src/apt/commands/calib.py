"""`apt calib`: sample the calibration windows once and save them for `apt prune --calib FILE.pt`."""

from __future__ import annotations

import io
import logging

from apt.errors import AptError

HELP = "sample nsamples x seqlen calibration tokens from a dataset and save them (.pt)"

log = logging.getLogger("apt.calib")


def add_arguments(parser):
    parser.add_argument("--model", required=False, help="model whose tokenizer to use "
                        "(smollm2-135m, a folder or a hub id)")
    parser.add_argument("--dataset", default="c4-sample",
                        help="wiki, c4-sample, wikitext2, ptb, c4 or a .txt file")
    parser.add_argument("--nsamples", type=int, default=128)
    parser.add_argument("--seqlen", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--out", required=False, metavar="FILE.pt")


def run(args) -> int:
    import torch

    from apt.data.calibration import build_calibration_set
    from apt.io import write_bytes_atomic

    if not args.model or not args.out:
        raise AptError("--model and --out are required (on the command line or in --config)")
    data = build_calibration_set(args.model, args.dataset, int(args.nsamples), int(args.seqlen),
                                 int(args.seed), split=args.split)
    buf = io.BytesIO()
    torch.save(data, buf)
    write_bytes_atomic(args.out, buf.getvalue())
    s = data["settings"]
    log.info("%s: %d x %d tokens from %s (%s, rule %s, seed %d)", args.out, s["nsamples"],
             s["seqlen"], s["dataset"], s["split"], s["rule"], s["seed"])
    return 0
