"""Resumable work folder of a pruning run.

After each finished block the folder holds, each file written atomically:
``block_NNNN.safetensors`` (that block's pruned parameters), ``hidden_NNNN.pt`` (the outputs of
block NNNN-1, i.e. the inputs of the next one, with the per-module report so far) and
``state.json`` (``{"fingerprint": ..., "done": N}``) written last, so a kill at any moment leaves
a consistent state. A rerun with the same fingerprint loads the
finished blocks and the hidden states and continues; the results are identical to an
uninterrupted run because the same tensors feed the same operations. A different fingerprint
starts afresh (the old folder is cleared).

With ``every=K`` the hidden states (the large part: tokens x hidden size per sample, about 2 GB
per block for a 7B model on 128 x 2048 tokens) and the state are written only after every K-th
block and after the last; a resumed run redoes at most K - 1 blocks.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from apt.io import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class WorkDir:
    def __init__(self, path: str | Path, fp: str, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"checkpoint interval must be >= 1 block; got {every}")
        self.path = Path(path)
        self.fp = fp
        self.every = every

    def _state(self) -> dict | None:
        try:
            return json.loads((self.path / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def start(self) -> int:
        """Number of finished blocks to resume from (0 = fresh); clears a stale folder."""
        state = self._state()
        if state and state.get("fingerprint") == self.fp:
            done = int(state["done"])
            if done == 0 or self._hidden_path(done).is_file():
                return done
        if self.path.exists():
            log.info("work folder %s holds another run's state; starting afresh", self.path)
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        write_json_atomic(self.path / "state.json", {"fingerprint": self.fp, "done": 0})
        return 0

    def save_block(self, index: int, block: torch.nn.Module, hidden: list[torch.Tensor],
                   records: list[dict], last: bool = False,
                   dense: list[torch.Tensor] | None = None) -> None:
        """Save block ``index``'s parameters; at a checkpoint (every ``every`` blocks, and the
        last) also the hidden states (and ``dense``, the dense model's, where they travel
        beside) and the state that make a rerun resume after it."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in block.state_dict().items()}
        write_bytes_atomic(self.path / f"block_{index:04d}.safetensors", save(tensors))
        if not (last or (index + 1) % self.every == 0):
            return
        buf = io.BytesIO()
        data = {"hidden": [h.cpu() for h in hidden], "records": records}
        if dense is not None:
            data["dense"] = [h.cpu() for h in dense]
        torch.save(data, buf)
        new = self._hidden_path(index + 1)
        write_bytes_atomic(new, buf.getvalue())
        write_json_atomic(self.path / "state.json", {"fingerprint": self.fp, "done": index + 1})
        for old in self.path.glob("hidden_*.pt"):
            if old != new:
                old.unlink()

    def _hidden_path(self, done: int) -> Path:
        return self.path / f"hidden_{done:04d}.pt"

    def load_block(self, index: int, block: torch.nn.Module) -> None:
        state = load_file(self.path / f"block_{index:04d}.safetensors")
        block.load_state_dict(state, strict=True)

    def load_hidden(self, done: int) -> tuple[list[torch.Tensor], list[dict],
                                              list[torch.Tensor] | None]:
        """Hidden states, per-module records and the dense model's hidden states (or None)."""
        data = torch.load(self._hidden_path(done), weights_only=True)
        return data["hidden"], data["records"], data.get("dense")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
