"""GPU slots for concurrent jobs on one machine.

Snakemake counts GPUs (``resources: gpu=1`` against ``--resources gpu=4``) but does not say
*which* GPU a job may use: four jobs started together would all land on device 0. This module
assigns devices. A job takes the first free slot among the visible GPUs by holding an exclusive
``fcntl`` lock on ``<lock_dir>/gpu<id>.lock``; the child command then runs with
``CUDA_VISIBLE_DEVICES=<id>`` (so inside it the device is ``cuda`` / ``cuda:0``). The kernel
releases the lock when the holder exits, even when it is killed, so no slot is ever leaked.

Command line (used by the workflow's GPU rules)::

    python -m apt.gpu [--lock-dir DIR] [--num-gpus N] [--wait SECONDS] -- apt prune ... --device cuda

Visible GPUs are, in order of preference: ``--num-gpus`` / ``APT_NUM_GPUS`` (ids 0..N-1), the
ids listed in ``CUDA_VISIBLE_DEVICES`` (as a SLURM job step sets it), or the GPUs ``nvidia-smi -L``
lists. The lock folder must be local to the machine (default ``$APT_GPU_LOCK_DIR`` or
``/tmp/apt-gpu-locks-<user>``); jobs on different machines never share one.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from apt.errors import AptError


def default_lock_dir() -> Path:
    env = os.environ.get("APT_GPU_LOCK_DIR")
    if env:
        return Path(env)
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = str(os.getuid())
    return Path("/tmp") / f"apt-gpu-locks-{user}"


def visible_gpus(num_gpus: int | None = None) -> list[str]:
    """The device ids a job may choose from (strings, as CUDA_VISIBLE_DEVICES takes them)."""
    if num_gpus is None and os.environ.get("APT_NUM_GPUS"):
        num_gpus = int(os.environ["APT_NUM_GPUS"])
    if num_gpus is not None:
        if num_gpus < 1:
            raise AptError(f"--num-gpus must be at least 1; got {num_gpus}")
        return [str(i) for i in range(num_gpus)]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [d.strip() for d in env.split(",") if d.strip()]
        if ids:
            return ids
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        n = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    except (OSError, subprocess.SubprocessError):
        n = 0
    if n == 0:
        raise AptError("no GPU visible (CUDA_VISIBLE_DEVICES is empty or unset and nvidia-smi "
                       "lists none); set device: cpu in the config, or --num-gpus N")
    return [str(i) for i in range(n)]


def _try_lock(path: Path):
    fh = open(path, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


@contextlib.contextmanager
def gpu_slot(lock_dir: str | os.PathLike | None = None, num_gpus: int | None = None,
             wait: float | None = None, poll: float = 0.5) -> Iterator[str]:
    """Hold the first free GPU among the visible ones; yield its id (for CUDA_VISIBLE_DEVICES).

    Blocks until a slot is free (at most ``wait`` seconds if given, then :class:`AptError`).
    """
    ids = visible_gpus(num_gpus)
    lock_dir = Path(lock_dir) if lock_dir else default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        for dev in ids:
            fh = _try_lock(lock_dir / f"gpu{dev}.lock")
            if fh is not None:
                try:
                    yield dev
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
                    fh.close()
                return
        if deadline is not None and time.monotonic() >= deadline:
            raise AptError(f"no free GPU among {','.join(ids)} after {wait:g} s (locks in "
                           f"{lock_dir}); run fewer GPU jobs at once (--resources gpu=N)")
        time.sleep(poll)


def run_on_free_gpu(command: Sequence[str], lock_dir=None, num_gpus=None, wait=None) -> int:
    """Run ``command`` with CUDA_VISIBLE_DEVICES set to a GPU no other such command holds."""
    if not command:
        raise AptError("give the command to run after --")
    with gpu_slot(lock_dir, num_gpus, wait) as dev:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=dev, APT_GPU_SLOT=dev)
        print(f"apt.gpu: running on GPU {dev}", file=sys.stderr, flush=True)
        return subprocess.run(list(command), env=env).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apt.gpu",
        description="Run a command on a GPU that no other command started this way is using.")
    parser.add_argument("--lock-dir", default=None, help="machine-local folder for the lock files")
    parser.add_argument("--num-gpus", type=int, default=None,
                        help="number of GPUs (ids 0..N-1); default: CUDA_VISIBLE_DEVICES or nvidia-smi")
    parser.add_argument("--wait", type=float, default=None,
                        help="give up after this many seconds without a free GPU (default: wait)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        return run_on_free_gpu(command, args.lock_dir, args.num_gpus, args.wait)
    except AptError as exc:
        print(f"apt.gpu: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
