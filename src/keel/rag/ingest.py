"""Ingest a folder (or files) into a collection: only what changed is re-indexed; ``sync``
removes documents whose files are gone. A file that fails to load is reported and skipped."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from keel.errors import UserError
from keel.rag.documents import Document
from keel.rag.loaders import DocumentError, load_file, supported


class IngestTarget(Protocol):
    def document_hash(self, doc_id: str) -> str | None: ...

    def document_ids(self) -> set[str]: ...

    def index_document(self, doc: Document) -> int: ...

    def delete_document(self, doc_id: str) -> bool: ...


@dataclass
class IngestReport:
    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    chunks: int = 0
    warnings: list[tuple[str, str]] = field(default_factory=list)
    reindexed: list[str] = field(default_factory=list)  # unchanged text, indexed before chunks carried titles


def discover(paths: Iterable[Path]) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Files to ingest with their document ids (path relative to the folder given), and skips."""
    found: list[tuple[Path, str]] = []
    skipped: list[tuple[str, str]] = []
    for root in paths:
        if root.is_file():
            found.append((root, root.name))
        elif root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in path.relative_to(root).parts):
                    continue
                if supported(path):
                    found.append((path, path.relative_to(root).as_posix()))
                else:
                    skipped.append((str(path), f"unsupported type '{path.suffix or '(none)'}'"))
        else:
            raise UserError(f"{root}: no such file or folder")
    ids = [doc_id for _, doc_id in found]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise UserError(f"two inputs give the same document id: {', '.join(sorted(dupes))}; ingest them separately")
    return found, skipped


#: A document to ingest: its id, where it came from (for the report), and how to load it.
Source = tuple[str, str, Callable[[], Document]]


def ingest_documents(
    collection: IngestTarget,
    sources: Iterable[Source],
    *,
    report: IngestReport | None = None,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """The one ingest loop (files, HTTP uploads): load each document, skip it with the reason if it
    fails to load, leave it if its hash is unchanged, else re-index it."""
    report = report if report is not None else IngestReport()
    for doc_id, where, load in sources:
        try:
            doc = load()
        except DocumentError as exc:
            report.skipped.append((where, exc.message.removeprefix(f"{where}: ")))
        else:
            report.warnings.extend((where, w) for w in doc.warnings)
            stored = collection.document_hash(doc.id)
            if stored == doc.hash:
                report.unchanged.append(doc.id)
            else:
                report.chunks += collection.index_document(doc)
                report.indexed.append(doc.id)
                if stored == doc.legacy_hash:
                    report.reindexed.append(doc.id)
        if progress:
            progress(doc_id)
    return report


def ingest(
    collection: IngestTarget, paths: list[Path], *, sync: bool = False, progress: Callable[[str], None] | None = None
) -> IngestReport:
    """Ingest files and folders; ``sync`` removes the documents whose files are gone."""
    files, skipped = discover(paths)
    sources = [(doc_id, str(path), functools.partial(load_file, path, doc_id)) for path, doc_id in files]
    report = ingest_documents(collection, sources, report=IngestReport(skipped=skipped), progress=progress)
    if sync:
        present = {doc_id for _, doc_id in files}
        for doc_id in sorted(collection.document_ids() - present):
            collection.delete_document(doc_id)
            report.removed.append(doc_id)
    return report
