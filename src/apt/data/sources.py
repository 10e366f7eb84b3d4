"""Named sources of models and texts, for both worlds: the hub and the offline assets.

INTERFACE (stable, other modules rely on it):
- ``resolve_model(name) -> str``: a local folder path or a hub id, for ``from_pretrained``.
- ``load_documents(name, split) -> list[str]``: the documents of a text dataset.
- ``load_text(name, split) -> str``: the documents joined as the standard protocol says.
- ``KNOWN_MODELS``, ``KNOWN_DATASETS``: the names, listed in error messages.
Unknown names raise :class:`apt.errors.AptError` listing the known ones.

Models: ``smollm2-135m`` and ``gemma3-270m`` (the offline assets built by ``apt assets``), any
local folder, or a hub id such as ``facebook/opt-125m`` (returned unchanged; loading errors are
reported by :mod:`apt.models`).

Datasets and their splits (``split`` is ``"train"`` for calibration, ``"test"`` for perplexity):

- ``wiki``, ``c4-sample`` (offline, ``resources/text/*.txt``): the files have no splits, so the
  split is made here, by document and deterministically: the final documents holding the
  **last 10 % of the characters** (at least one document) are ``test``, the rest ``train``
  (:func:`split_by_document`). Calibration and evaluation never share a document. Documents
  are joined with a blank line.
- ``wikitext2``: ``wikitext`` / ``wikitext-2-raw-v1``; test rows joined with ``"\\n\\n"``
  (protocol), train rows joined with ``" "`` (as the SparseGPT/Wanda calibration code does).
- ``ptb``: ``ptb_text_only`` / ``penn_treebank``, the ``sentence`` column joined with ``" "``.
- ``c4``: ``allenai/c4`` by ``data_files``: train = shard ``en/c4-train.00000-of-01024.json.gz``,
  test = the first 1100 documents of ``en/c4-validation.00000-of-00008.json.gz``, joined with
  ``" "`` (the cut to 256 x 2048 tokens is a token-level step done by the evaluation).
- a path to a local text file (documents separated by blank lines): the whole file, for every
  split (the user chose the file; give different files for calibration and evaluation).

Hub datasets are loaded through :func:`_load_hub_dataset`, the only call into ``datasets``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from apt.errors import AptError
from apt.paths import resources_dir

OFFLINE_MODELS: dict[str, str] = {"smollm2-135m": "models/smollm2-135m",
                                   "gemma3-270m": "models/gemma3-270m"}
# The `apt assets --only` name that builds each offline model.
OFFLINE_MODEL_ASSETS: dict[str, str] = {"smollm2-135m": "model", "gemma3-270m": "gemma3"}

KNOWN_MODELS: dict[str, str] = {
    "smollm2-135m": "SmolLM2-135M-Instruct, dequantized from the pinned GGUF (offline; "
                    "`apt assets --only model`)",
    "gemma3-270m": "Gemma-3-270M (base; Gemma Terms of Use), dequantized from the pinned GGUF "
                   "(offline; `apt assets --only gemma3`)",
}

SPLITS = ("train", "test")
TEST_FRACTION = 0.10


@dataclass(frozen=True)
class HubText:
    """How to read one split of a hub dataset: ``load_dataset(path, name, data_files=..)[column]``."""

    path: str
    name: str | None
    split: str
    column: str
    joiner: str
    data_files: dict[str, str] | None = None
    first: int | None = None  # keep only the first N rows


@dataclass(frozen=True)
class HubDataset:
    description: str
    splits: dict[str, HubText] = field(default_factory=dict)


_C4_TRAIN = {"train": "en/c4-train.00000-of-01024.json.gz"}
_C4_VAL = {"validation": "en/c4-validation.00000-of-00008.json.gz"}

HUB_DATASETS: dict[str, HubDataset] = {
    "wikitext2": HubDataset("WikiText-2 raw (hub: wikitext/wikitext-2-raw-v1)", {
        "train": HubText("wikitext", "wikitext-2-raw-v1", "train", "text", " "),
        "test": HubText("wikitext", "wikitext-2-raw-v1", "test", "text", "\n\n"),
    }),
    "ptb": HubDataset("Penn Treebank (hub: ptb_text_only/penn_treebank)", {
        "train": HubText("ptb_text_only", "penn_treebank", "train", "sentence", " "),
        "test": HubText("ptb_text_only", "penn_treebank", "test", "sentence", " "),
    }),
    "c4": HubDataset("C4 (hub: allenai/c4, first train shard / first 1100 validation documents)", {
        "train": HubText("allenai/c4", None, "train", "text", " ", data_files=_C4_TRAIN),
        "test": HubText("allenai/c4", None, "validation", "text", " ", data_files=_C4_VAL,
                        first=1100),
    }),
}

OFFLINE_TEXTS: dict[str, str] = {"wiki": "text/wiki.txt", "c4-sample": "text/c4-sample.txt"}

KNOWN_DATASETS: dict[str, str] = {
    "wiki": "Wikipedia sample, 2349 documents (offline; `apt assets --only texts`)",
    "c4-sample": "C4 sample, 118 documents (offline; `apt assets --only texts`)",
    **{k: v.description for k, v in HUB_DATASETS.items()},
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _known(d: dict) -> str:
    return ", ".join(d)


# ------------------------------------------------------------------------------------ models


def offline_model_dir(name: str) -> Path:
    return resources_dir() / OFFLINE_MODELS[name]


def resolve_model(name: str) -> str:
    """A folder (absolute path) or a hub id for ``from_pretrained``; AptError for anything else."""
    name = str(name)
    if name in OFFLINE_MODELS:
        folder = offline_model_dir(name)
        if not (folder / "config.json").is_file():
            raise AptError(f"model {name!r} is an offline asset that is not built yet (no "
                           f"{folder}); run `apt assets --only {OFFLINE_MODEL_ASSETS[name]}` first, "
                           "or set APT_RESOURCES to the folder where the assets were built")
        return str(folder)
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p.resolve())
    if p.exists():
        raise AptError(f"model {name!r} is a file, not a folder; pass a checkpoint folder, a hub "
                       f"id (org/name) or one of: {_known(KNOWN_MODELS)}")
    if _HUB_ID.match(name) and not name.startswith("."):
        return name
    raise AptError(f"unknown model {name!r}: not a known name, an existing folder or a hub id "
                   f"(org/name); known names: {_known(KNOWN_MODELS)}")


# ------------------------------------------------------------------------------------ texts


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise AptError(f"dataset {name!r}: unknown split {split!r}; use one of {', '.join(SPLITS)}")


def split_by_document(docs: list[str], split: str) -> list[str]:
    """Deterministic document-level split: ``test`` is the shortest run of final documents that
    holds at least :data:`TEST_FRACTION` of the characters (>= 1 document), ``train`` the rest.

    By characters rather than by count: the Wikipedia sample mixes title-only stubs and long
    articles, and its last 10 % of documents hold only 3 % of its text.
    """
    if len(docs) < 2:
        raise AptError(f"{len(docs)} document(s): too few to split into train and test")
    total = sum(len(d) for d in docs)
    n_test, chars = 0, 0
    while n_test < len(docs) - 1 and (n_test == 0 or chars < TEST_FRACTION * total):
        n_test += 1
        chars += len(docs[-n_test])
    return docs[-n_test:] if split == "test" else docs[:-n_test]


def _read_text_file(path: Path) -> list[str]:
    from apt.data.texts import split_documents

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AptError(f"{path}: not UTF-8 text ({exc})") from None
    docs = split_documents(text)
    if not docs:
        raise AptError(f"{path}: no text")
    return docs


def _load_hub_dataset(path: str, name: str | None, split: str, data_files=None):
    """The one call into ``datasets`` (tests replace it). Errors become :class:`AptError`."""
    try:
        from datasets import load_dataset

        return load_dataset(path, name, split=split, data_files=data_files)
    except Exception as exc:  # network, missing dataset, offline mode...
        raise AptError(
            f"could not load dataset {path}{'/' + name if name else ''} ({split}) from the "
            f"Hugging Face hub: {type(exc).__name__}: {exc}. Check the connection (and "
            "HF_DATASETS_OFFLINE / HF_HUB_OFFLINE), or use an offline dataset: "
            f"{', '.join(OFFLINE_TEXTS)}") from None


def _hub_rows(spec: HubText):
    """The column of a hub split as a sequence (lazy where ``datasets`` allows: C4 is large)."""
    ds = _load_hub_dataset(spec.path, spec.name, spec.split, data_files=spec.data_files)
    rows = ds[spec.column]
    return rows[: spec.first] if spec.first is not None else rows


def document_sequence(name: str, split: str = "test"):
    """Like :func:`load_documents` but a hub split may stay a lazy sequence (``len`` and ``[i]``),
    so that sampling a few documents of the C4 shard does not copy all of them."""
    name = str(name)
    if name in HUB_DATASETS:
        _check_split(name, split)
        return _hub_rows(HUB_DATASETS[name].splits[split])
    return load_documents(name, split)


def dataset_identity(name: str, split: str) -> dict:
    """What determines the text of ``name``/``split`` (for cache keys and provenance).

    Offline and local texts are identified by the sha256 of the split's text itself, so a
    changed file or a changed splitting rule can never hit a stale cache entry.
    """
    import hashlib

    _check_split(name, split)
    if name in HUB_DATASETS:
        spec = HUB_DATASETS[name].splits[split]
        return {"dataset": name, "split": split, "kind": "hub", "path": spec.path,
                "config": spec.name, "hub_split": spec.split, "data_files": spec.data_files,
                "first": spec.first, "joiner": spec.joiner}
    if name in OFFLINE_TEXTS:
        kind, extra = "offline", {"test_fraction": TEST_FRACTION}
    elif Path(name).expanduser().is_file():
        kind, extra = "file", {"path": str(Path(name).expanduser().resolve())}
    else:
        raise _unknown_dataset(name)
    text = load_text(name, split)
    return {"dataset": name, "split": split, "kind": kind, **extra,
            "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def _unknown_dataset(name: str) -> AptError:
    return AptError(f"unknown dataset {name!r}; known: {_known(KNOWN_DATASETS)}, or a path to a "
                    "text file (documents separated by blank lines)")


def load_documents(name: str, split: str = "test") -> list[str]:
    """The documents (hub: rows) of ``split`` of dataset ``name``."""
    name = str(name)
    _check_split(name, split)
    if name in OFFLINE_TEXTS:
        path = resources_dir() / OFFLINE_TEXTS[name]
        if not path.is_file():
            raise AptError(f"dataset {name!r} is an offline asset that is not built yet (no "
                           f"{path}); run `apt assets --only texts` first, or set APT_RESOURCES to the "
                           "folder where the assets were built")
        return split_by_document(_read_text_file(path), split)
    if name in HUB_DATASETS:
        return [str(r) for r in _hub_rows(HUB_DATASETS[name].splits[split])]
    p = Path(name).expanduser()
    if p.is_file():
        return _read_text_file(p)
    raise _unknown_dataset(name)


def joiner(name: str, split: str = "test") -> str:
    """The string that joins the documents of ``name``/``split`` into one text."""
    if name in HUB_DATASETS:
        _check_split(name, split)
        return HUB_DATASETS[name].splits[split].joiner
    return "\n\n"


def load_text(name: str, split: str = "test") -> str:
    """The documents of ``split`` joined as the protocol says (see the module docstring)."""
    return joiner(str(name), split).join(load_documents(name, split))


__all__ = ["KNOWN_MODELS", "OFFLINE_MODEL_ASSETS", "KNOWN_DATASETS", "HUB_DATASETS", "OFFLINE_TEXTS", "SPLITS",
           "TEST_FRACTION", "resolve_model", "load_documents", "document_sequence", "load_text", "joiner",
           "dataset_identity", "split_by_document"]
