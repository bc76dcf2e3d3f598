"""A collection: documents and chunks in SQLite, keyword and vector indexes in memory.

Each document is written in one transaction (its old chunks out, its new chunks in), so a crash
or Ctrl-C never leaves a half-indexed document. Embeddings are cached by chunk hash: re-ingesting
unchanged text costs nothing. Another process's changes are picked up through a version counter.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections import Counter
from typing import Any

import numpy as np
import orjson

from keel.errors import UserError
from keel.rag.bm25 import BM25Index
from keel.rag.documents import Document
from keel.rag.embedder import TextEmbedder
from keel.rag.found import Found
from keel.rag.hnsw import AdaptiveVectorIndex
from keel.rag.search import Mode
from keel.rag.sqlbase import SQLCollection

__all__ = ["Collection", "Found", "Mode", "check_key", "check_name", "collection_key", "list_collections"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY = re.compile(r"^([0-9a-f]{12}~)?[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_TENANT = "default"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"'{name}' is not a collection name: use 1–64 letters, digits, '_', '.' or '-'")
    return name


def collection_key(tenant: str, name: str) -> str:
    """Where a tenant's collection is stored: its name for the default tenant (so existing
    installs keep theirs), else ``<tenant digest>~<name>`` — '~' is never in a name, so two
    tenants' collections can never share a key."""
    check_name(name)
    if tenant == DEFAULT_TENANT:
        return name
    return f"{hashlib.sha256(tenant.encode()).hexdigest()[:12]}~{name}"


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise UserError(f"'{key}' is not a collection key")
    return key


class Collection(SQLCollection):
    def __init__(self, conn: sqlite3.Connection, name: str, embedder: TextEmbedder) -> None:
        self.conn = conn
        self.name = check_key(name)
        self.embedder = embedder
        row = conn.execute("SELECT * FROM rag_collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            shown = name.rsplit("~", 1)[-1]  # the name its tenant gave it, never the stored key
            raise UserError(f"no collection '{shown}'; create it with `keel ingest {shown} PATH`")
        self.label = str(row["label"] or name)
        self.tenant = str(row["tenant"])
        if row["embedder"] != embedder.name:
            raise UserError(f"collection '{self.label}' was built with {row['embedder']}, not {embedder.name}")
        self.chunk_tokens = int(row["chunk_tokens"])
        self.rerank = str(row["rerank"])
        self.overlap = int(row["overlap"])
        self.version = -1
        self.keyword = BM25Index()
        self.vectors = AdaptiveVectorIndex(embedder.dims)
        self.refresh()

    @classmethod
    def create(
        cls,
        conn: sqlite3.Connection,
        name: str,
        embedder: TextEmbedder,
        *,
        chunk_tokens: int = 128,
        overlap: int = 0,
        tenant: str = DEFAULT_TENANT,
    ) -> Collection:
        key = collection_key(tenant, name)
        conn.execute(
            "INSERT OR IGNORE INTO rag_collections(name, created, embedder, dims, chunk_tokens, overlap, tenant, "
            "label) VALUES (?,?,?,?,?,?,?,?)",
            (key, time.time(), embedder.name, embedder.dims, chunk_tokens, overlap, tenant, name),
        )
        return cls(conn, key, embedder)

    # -- loading ---------------------------------------------------------------------------------
    def _stored_version(self) -> int:
        row = self.conn.execute("SELECT version FROM rag_collections WHERE name = ?", (self.name,)).fetchone()
        return int(row[0]) if row else -1

    def refresh(self) -> None:
        """(Re)load the in-memory indexes if the stored collection changed."""
        version = self._stored_version()
        if version == self.version:
            return
        self.keyword = BM25Index()
        self.vectors = AdaptiveVectorIndex(self.embedder.dims)
        rows = self.conn.execute(
            "SELECT chunk_id, terms, embedding FROM rag_chunks WHERE collection = ? ORDER BY rowid", (self.name,)
        )
        ids, counts, vectors = [], [], []
        for chunk_id, packed, blob in rows:
            ids.append(chunk_id)
            counts.append(Counter(orjson.loads(packed)))
            vectors.append(np.frombuffer(blob, dtype=np.float32))
        if ids:
            self.keyword.add_counts(ids, counts)
            self.vectors.add(ids, np.stack(vectors))
        self.version = version

    # -- writing ---------------------------------------------------------------------------------
    def index_document(self, doc: Document) -> int:
        """Replace a document's chunks atomically; returns how many chunks it now has."""
        chunks, vectors, counts = self._prepare(doc)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM rag_chunks WHERE collection = ? AND doc_id = ?", (self.name, doc.id))
            conn.executemany(
                "INSERT INTO rag_chunks(collection, chunk_id, doc_id, ordinal, text, heading_path, page, "
                "start_offset, end_offset, tokens, terms, embedding) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (*self._chunk_row(c), orjson.dumps(tf).decode(), v.tobytes())
                    for c, tf, v in zip(chunks, counts, vectors, strict=True)
                ],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO rag_embed_cache(hash, model, vector) VALUES (?,?,?)",
                [(c.hash, self.embedder.name, v.tobytes()) for c, v in zip(chunks, vectors, strict=True)],
            )
            conn.execute(
                "INSERT OR REPLACE INTO rag_documents(collection, doc_id, source, kind, title, hash, chunks, indexed) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (self.name, doc.id, doc.source, doc.kind, doc.title, doc.hash, len(chunks), time.time()),
            )
            conn.execute("UPDATE rag_collections SET version = version + 1 WHERE name = ?", (self.name,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        old = [cid for cid in self.keyword.slot if cid.startswith(doc.id + "#")]
        self.keyword.delete(old)
        self.vectors.delete(old)
        if chunks:
            self.keyword.add_counts([c.id for c in chunks], counts)
            self.vectors.add([c.id for c in chunks], vectors)
        self.version += 1
        return len(chunks)

    def delete_document(self, doc_id: str) -> bool:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            gone = conn.execute(
                "DELETE FROM rag_documents WHERE collection = ? AND doc_id = ?", (self.name, doc_id)
            ).rowcount
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT chunk_id FROM rag_chunks WHERE collection = ? AND doc_id = ?", (self.name, doc_id)
                )
            ]
            conn.execute("DELETE FROM rag_chunks WHERE collection = ? AND doc_id = ?", (self.name, doc_id))
            conn.execute("UPDATE rag_collections SET version = version + 1 WHERE name = ?", (self.name,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.keyword.delete(ids)
        self.vectors.delete(ids)
        self.version += 1
        return bool(gone > 0)

    # -- reading ---------------------------------------------------------------------------------
    def search(self, query: str, **options: Any) -> list[Found]:
        """Ranked chunks; see ``keel.rag.search.run_search`` for the options."""
        self.refresh()  # another process may have changed the collection
        return super().search(query, **options)


def list_collections(conn: sqlite3.Connection, tenant: str | None) -> list[dict[str, Any]]:
    """A tenant's collections by their names (``tenant`` None: every tenant's, for the admin)."""
    where, args = ("WHERE c.tenant = ?", (tenant,)) if tenant is not None else ("", ())
    rows = conn.execute(
        "SELECT coalesce(c.label, c.name) AS name, c.tenant, c.embedder, c.chunk_tokens, c.created, "
        "count(d.doc_id) AS documents, coalesce(sum(d.chunks), 0) AS chunks FROM rag_collections c "
        f"LEFT JOIN rag_documents d ON d.collection = c.name {where} GROUP BY c.name ORDER BY 1",
        args,
    )
    return [dict(r) for r in rows]
