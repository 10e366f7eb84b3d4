"""Plain-text corpora: parse the WikiExtractor dumps of the offline assets, one file format.

The project's text format (the offline ``resources/text/*.txt`` and any local ``.txt`` a user
passes as a dataset) is: **documents separated by one blank line**, no blank line inside a
document. :func:`format_documents` writes it (collapsing blank lines inside a document into a
single newline, so the separator stays unambiguous) and :func:`split_documents` reads it back,
so ``split_documents(format_documents(docs)) == normalised docs`` exactly.
"""

from __future__ import annotations

import re

_DOC_OPEN = re.compile(r"<doc\b[^>]*>")
_DOC_CLOSE = re.compile(r"</doc\s*>")
_BLANK_RUN = re.compile(r"\n[ \t\r\f\v]*(?:\n[ \t\r\f\v]*)+")


def normalise_document(doc: str) -> str:
    """One document with no blank line inside (runs of blank lines become one newline)."""
    return _BLANK_RUN.sub("\n", doc.strip())


def parse_wikiextractor(raw: str) -> list[str]:
    """The documents of a WikiExtractor dump (``<doc id=.. title=..>text</doc>`` blocks).

    Tags are stripped; text outside any block is ignored. A file without any ``<doc`` tag is
    read as one document per non-empty line (the layout of the C4 sample, whose documents are
    single lines).
    """
    if not _DOC_OPEN.search(raw):
        return [line.strip() for line in raw.splitlines() if line.strip()]
    docs = []
    for block in _DOC_OPEN.split(raw)[1:]:
        body = _DOC_CLOSE.split(block, maxsplit=1)[0]
        body = normalise_document(body)
        if body:
            docs.append(body)
    return docs


def format_documents(docs: list[str]) -> str:
    """Documents as text in the project's format (blank-line separated, trailing newline)."""
    parts = [normalise_document(d) for d in docs]
    return "\n\n".join(p for p in parts if p) + "\n"


def split_documents(text: str) -> list[str]:
    """The documents of a text in the project's format (split on blank lines)."""
    return [d.strip() for d in re.split(r"\n[ \t\r\f\v]*\n", text) if d.strip()]
