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


def code_version(*parts: str, root: Path | None = None) -> str:
    """Short hash of the library's own code for ``parts`` (subpackages or modules of ``apt``,
    e.g. ``"pruning"``, ``"commands/prune.py"``): of each module's syntax tree, so comments and
    docstrings do not count, any change of code does.

    The workflow passes it as a rule param so that Snakemake reruns the jobs whose code changed
    (output mtimes alone would not notice a library change). ``root``: the package folder
    (default this one).
    """
    root = root or Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for part in parts:
        path = root / part
        if not path.exists():
            raise FileNotFoundError(f"code_version: no {path}")
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(f"{file.relative_to(root)}\0".encode())
            digest.update(_code_digest(file.read_bytes()))
    return digest.hexdigest()[:16]


def _pruning_imports(source: bytes, modules: set[str]) -> set[str]:
    """The modules of ``apt.pruning`` (names in ``modules``) that a module's source imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "apt.pruning":
                found |= {a.name for a in node.names if a.name in modules}
            elif node.module.startswith("apt.pruning."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names
                      if a.name.startswith("apt.pruning.")}
    return found & modules


def pruning_modules_for(method: str, *parts: str, root: Path | None = None) -> list[str]:
    """The modules of ``apt/pruning`` whose code a run of ``method`` can execute: those its own
    module reaches by import, and those that the package's ``__init__`` and ``parts`` (other
    subpackages or modules of ``apt``) reach, without the other methods' modules. The
    methods are the modules ``__init__`` lists in ``METHODS``."""
    root = root or Path(__file__).resolve().parent
    pruning = root / "pruning"
    modules = {f.stem for f in pruning.glob("*.py") if f.stem != "__init__"}
    init = (pruning / "__init__.py").read_bytes()
    methods = _methods_of(init)
    if method not in methods:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(sorted(methods))}")
    others = set(methods.values()) - {methods[method]}
    todo = {methods[method]} | (_pruning_imports(init, modules) - others)
    for part in parts:
        path = root / part
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            todo |= _pruning_imports(file.read_bytes(), modules)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo |= _pruning_imports((pruning / f"{name}.py").read_bytes(), modules) - others
    return sorted(seen)


def _methods_of(init: bytes) -> dict[str, str]:
    """``METHODS`` of ``apt/pruning/__init__.py``: method name -> its module's name."""
    for node in ast.walk(ast.parse(init)):
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "METHODS"
                                                 for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            return {k.value: v.id for k, v in zip(node.value.keys, node.value.values)}
    raise ValueError("apt/pruning/__init__.py defines no METHODS dict")


def method_code_version(method: str, *parts: str, root: Path | None = None) -> str:
    """:func:`code_version` of ``parts`` and of the solver code ``method`` runs
    (:func:`pruning_modules_for`, with the package's ``__init__``): editing one method's
    solver changes that method's version only, a shared module (masks, Hessian, patterns)
    every method's that reaches it."""
    root = root or Path(__file__).resolve().parent
    files = ["pruning/__init__.py"] + [f"pruning/{m}.py"
                                       for m in pruning_modules_for(method, *parts, root=root)]
    return code_version(*files, *parts, root=root)
