"""What made a result: library versions, git commit, machine. Recorded in every result file."""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

_PACKAGES = ("apt-prune", "torch", "transformers", "datasets", "lm_eval", "safetensors", "gguf",
             "mamba_ssm")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Versions and machine facts to store next to any figure."""
    import torch

    env: dict[str, Any] = {
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "git_commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _code_digest(source: bytes) -> bytes:
    """The syntax tree of a module without its comments and docstrings (so editing those does
    not count as a code change); the bytes themselves if the file does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def code_version(*parts: str) -> str:
    """Short hash of the library's own code for ``parts`` (subpackages or modules of ``apt``,
    e.g. ``"pruning"``, ``"commands/prune.py"``): of each module's syntax tree, so comments and
    docstrings do not count, any change of code does.

    The workflow passes it as a rule param so that Snakemake reruns the jobs whose code changed
    (output mtimes alone would not notice a library change).
    """
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for part in parts:
        path = root / part
        if not path.exists():
            raise FileNotFoundError(f"code_version: no {path}")
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(f"{file.relative_to(root)}\0".encode())
            digest.update(_code_digest(file.read_bytes()))
    return digest.hexdigest()[:16]
