"""Capture real layer Hessians of SmolLM2-135M for the solver benchmarks (:mod:`benchmarks.solvers`,
:mod:`benchmarks.apt_variants`).

The calibration windows are drawn as ``apt prune --calib`` draws them
(:func:`apt.data.calibration.sample_calibration_with_info`: a dataset name, by default the train
split of the offline C4 sample) or read from a file of ``apt calib``. They run through the
*dense* model with the engine's own machinery: the inputs of block 0 are captured
(:func:`apt.engine.capture.capture_block_inputs`), then each block up to the last chosen one runs
on them, and in the chosen blocks the engine's hooks (:func:`apt.engine.hooks.accumulate_inputs`)
accumulate the input Hessian ``(2/T) sum x x^T`` of every prunable linear layer (q/k/v/o/gate/
up/down for LLaMA-family models), as they do when the engine prunes.

The Hessians are those of the dense model (no sequential pruning): the benchmarks compare solvers
on the same layer problems, which is what a per-layer error needs. Saved as
``{name: (weight float32, hessian float64)}`` plus a ``__meta__`` entry with the settings
(``ntokens``: the calibration tokens, which APT's default damping follows).

    .venv/bin/python -m benchmarks.collect_hessians [--model smollm2-135m] [--calib c4-sample]
        [--blocks 0,7,15,23,29] [--nsamples 16] [--seqlen 512] [--seed 0]
        [--out $APT_RESOURCES/bench/hessians_smollm2.pt]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import torch

from apt.commands.prune import load_calib_file
from apt.data.calibration import sample_calibration_with_info
from apt.engine.capture import capture_block_inputs
from apt.engine.hooks import accumulate_inputs, stats_forward
from apt.errors import AptError
from apt.io import write_bytes_atomic
from apt.models import Adapter, adapter_for, load_model
from benchmarks.common import hessians_path


def calibration(tokenizer, calib: str, nsamples: int | None, seqlen: int | None,
                seed: int) -> tuple[torch.Tensor, dict]:
    """The windows (nsamples x seqlen token ids) and how they were drawn, as ``apt prune``'s
    ``--calib``: a file of ``apt calib`` (``*.pt``; unset sizes are the file's) or a dataset
    name sampled here (unset sizes: 16 x 512)."""
    if calib.endswith(".pt"):
        ids, settings = load_calib_file(Path(calib), nsamples, seqlen)
        return ids, {"file": calib, **{k: v for k, v in settings.items()
                                       if k in ("dataset", "split", "rule", "seed")}}
    return sample_calibration_with_info(tokenizer, calib, nsamples or 16, seqlen or 512, seed)


@torch.no_grad()
def collect(model, adapter: Adapter, samples: torch.Tensor, blocks: list[int],
            device: torch.device | str = "cpu") -> tuple[dict[str, tuple], int]:
    """``({name: (weight, hessian)}, tokens)`` of every prunable layer of ``blocks``, from the
    dense model's forwards on ``samples`` (K x L token ids)."""
    device = torch.device(device)
    layers = adapter.blocks(model)
    names = adapter.prunable_names()
    inputs = capture_block_inputs(model, adapter, samples, device)
    out: dict[str, tuple] = {}
    ntokens = 0
    last = max(blocks)
    for i in range(last + 1):
        block = layers[i]
        home = next(block.parameters()).device
        block.to(device)
        if i in blocks:
            with accumulate_inputs(adapter, block, names, device) as accs:
                for j in range(len(inputs.hidden)):
                    stats_forward(inputs.call, block, j)
            modules = adapter.prunable(block)
            for name in names:
                weight = adapter.get_weight(modules[name]).detach().float().cpu().clone()
                out[f"{adapter.blocks_path}.{i}.{name}"] = (
                    weight, accs[name].hessian.to(device="cpu", dtype=torch.float64).clone())
                ntokens = accs[name].ntokens
        if i < last:
            inputs.hidden = [inputs.call(block, j) for j in range(len(inputs.hidden))]
        block.to(home)
    return out, ntokens


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m",
                    help="a known model name, a local folder or a hub id")
    ap.add_argument("--calib", default="c4-sample",
                    help="dataset to sample (its train split) or a file of `apt calib`")
    ap.add_argument("--blocks", default="0,7,15,23,29")
    ap.add_argument("--nsamples", type=int, default=None,
                    help="calibration windows (default 16, or all of a --calib file)")
    ap.add_argument("--seqlen", type=int, default=None,
                    help="tokens per window (default 512, or the --calib file's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(hessians_path()))
    args = ap.parse_args(argv)

    t0 = time.time()
    model, tok = load_model(args.model, dtype=torch.float32, require_adapter=True)
    adapter = adapter_for(model)
    count = len(adapter.blocks(model))
    try:
        blocks = sorted({int(b) for b in args.blocks.split(",") if b.strip()})
    except ValueError:
        raise SystemExit(f"--blocks {args.blocks!r}: expected block indices, e.g. 0,7,15") from None
    if not blocks or blocks[0] < 0 or blocks[-1] >= count:
        raise SystemExit(f"--blocks {args.blocks}: the model has {count} blocks (0-{count - 1})")
    try:
        samples, info = calibration(tok, args.calib, args.nsamples, args.seqlen, args.seed)
    except AptError as exc:
        raise SystemExit(str(exc)) from None
    layers, ntokens = collect(model, adapter, samples, blocks, args.device)

    out: dict[str, object] = dict(layers)
    out["__meta__"] = {"model": str(getattr(model, "name_or_path", args.model)),
                       "text": args.calib, "calibration": info, "blocks": blocks,
                       "nsamples": int(samples.shape[0]), "seqlen": int(samples.shape[1]),
                       "seed": args.seed, "ntokens": ntokens, "last_block": blocks[-1],
                       "note": "dense-model input Hessians (2/T) sum x x^T, no damping, "
                               "accumulated by the engine's hooks (float32), saved as float64"}
    buf = io.BytesIO()
    torch.save(out, buf)
    write_bytes_atomic(Path(args.out), buf.getvalue())
    print(f"saved {len(layers)} layers ({samples.shape[0]} x {samples.shape[1]} tokens of "
          f"{args.calib}, model {args.model}) to {args.out} in {time.time() - t0:.0f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
