"""A collection that lives entirely in Postgres (documents, chunks, embedding cache, BM25 postings,
pgvector HNSW), so any number of gateway replicas share it. Same behaviour as the embedded one:
one transaction per document, embeddings cached by chunk hash, the shared search pipeline."""

from __future__ import annotations

import time
from typing import Any

from keel.errors import UserError
from keel.rag.collection import DEFAULT_TENANT, check_key, collection_key
from keel.rag.documents import Document
from keel.rag.embedder import TextEmbedder
from keel.rag.pg import PgKeywordIndex, PgVectorIndex
from keel.rag.sqlbase import SQLCollection

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS keel_rag_collections (name text PRIMARY KEY, created float8 NOT NULL, "
    "embedder text NOT NULL, dims int NOT NULL, chunk_tokens int NOT NULL, overlap int NOT NULL, "
    "rerank text NOT NULL DEFAULT 'none')",
    "CREATE TABLE IF NOT EXISTS keel_rag_documents (collection text, doc_id text, source text, kind text, "
    "title text, hash text NOT NULL, chunks int NOT NULL, indexed float8 NOT NULL, PRIMARY KEY (collection, doc_id))",
    "CREATE TABLE IF NOT EXISTS keel_rag_chunks (collection text, chunk_id text, doc_id text, ordinal int, "
    "text text NOT NULL, heading_path jsonb NOT NULL, page int, start_offset int, end_offset int, tokens int, "
    "PRIMARY KEY (collection, chunk_id))",
    "CREATE INDEX IF NOT EXISTS keel_rag_chunks_doc ON keel_rag_chunks (collection, doc_id)",
    "CREATE TABLE IF NOT EXISTS keel_rag_embed_cache (hash text, model text, vector bytea NOT NULL, "
    "PRIMARY KEY (hash, model))",
    "ALTER TABLE keel_rag_collections ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default'",
    "ALTER TABLE keel_rag_collections ADD COLUMN IF NOT EXISTS label text",
]


def ensure_schema(conn: Any) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7271001)")  # replicas starting together
        for statement in SCHEMA:
            conn.execute(statement)


class PgCollection(SQLCollection):
    placeholder = "%s"
    collections_table = "keel_rag_collections"
    documents_table = "keel_rag_documents"
    chunks_table = "keel_rag_chunks"
    cache_table = "keel_rag_embed_cache"

    def __init__(self, conn: Any, name: str, embedder: TextEmbedder) -> None:
        self.conn = conn
        self.name = check_key(name)
        self.embedder = embedder
        row = conn.execute(
            "SELECT embedder, chunk_tokens, overlap, rerank, tenant, coalesce(label, name) "
            "FROM keel_rag_collections WHERE name = %s",
            (name,),
        ).fetchone()
        if row is None:
            shown = name.rsplit("~", 1)[-1]  # the name its tenant gave it, never the stored key
            raise UserError(f"no collection '{shown}'; create it with `keel ingest {shown} PATH`")
        self.tenant, self.label = str(row[4]), str(row[5])
        if row[0] != embedder.name:
            raise UserError(f"collection '{self.label}' was built with {row[0]}, not {embedder.name}")
        self.chunk_tokens, self.overlap, self.rerank = int(row[1]), int(row[2]), str(row[3])
        self.keyword = PgKeywordIndex(conn, name)
        self.vectors = PgVectorIndex(conn, name, embedder.dims)

    @classmethod
    def create(
        cls,
        conn: Any,
        name: str,
        embedder: TextEmbedder,
        *,
        chunk_tokens: int = 128,
        overlap: int = 0,
        tenant: str = DEFAULT_TENANT,
    ) -> PgCollection:
        key = collection_key(tenant, name)
        ensure_schema(conn)
        conn.execute(
            "INSERT INTO keel_rag_collections (name, created, embedder, dims, chunk_tokens, overlap, tenant, label) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
            (key, time.time(), embedder.name, embedder.dims, chunk_tokens, overlap, tenant, name),
        )
        return cls(conn, key, embedder)

    def index_document(self, doc: Document) -> int:
        chunks, vectors, counts = self._prepare(doc)
        with self.conn.transaction():  # the index writes below nest as savepoints: all or nothing
            old = [
                r[0]
                for r in self.conn.execute(
                    "DELETE FROM keel_rag_chunks WHERE collection = %s AND doc_id = %s RETURNING chunk_id",
                    (self.name, doc.id),
                ).fetchall()
            ]
            self.keyword.delete(old)
            self.vectors.delete(old)
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO keel_rag_chunks VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [self._chunk_row(c) for c in chunks],
                )
                cur.executemany(
                    "INSERT INTO keel_rag_embed_cache VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    [(c.hash, self.embedder.name, v.tobytes()) for c, v in zip(chunks, vectors, strict=True)],
                )
            if chunks:
                self.keyword.add_counts([c.id for c in chunks], counts)
                self.vectors.add([c.id for c in chunks], vectors)
            self.conn.execute(
                "INSERT INTO keel_rag_documents VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (collection, doc_id) DO UPDATE SET source = excluded.source, kind = excluded.kind, "
                "title = excluded.title, "
                "hash = excluded.hash, chunks = excluded.chunks, indexed = excluded.indexed",
                (self.name, doc.id, doc.source, doc.kind, doc.title, doc.hash, len(chunks), time.time()),
            )
        return len(chunks)

    def delete_document(self, doc_id: str) -> bool:
        with self.conn.transaction():
            gone = self.conn.execute(
                "DELETE FROM keel_rag_documents WHERE collection = %s AND doc_id = %s", (self.name, doc_id)
            ).rowcount
            old = [
                r[0]
                for r in self.conn.execute(
                    "DELETE FROM keel_rag_chunks WHERE collection = %s AND doc_id = %s RETURNING chunk_id",
                    (self.name, doc_id),
                ).fetchall()
            ]
            self.keyword.delete(old)
            self.vectors.delete(old)
        return bool(gone)


def list_pg_collections(conn: Any, tenant: str | None) -> list[dict[str, Any]]:
    """A tenant's collections by their names (``tenant`` None: every tenant's, for the admin)."""
    ensure_schema(conn)
    where, args = ("WHERE c.tenant = %s", (tenant,)) if tenant is not None else ("", ())
    rows = conn.execute(
        "SELECT coalesce(c.label, c.name), c.tenant, c.embedder, c.chunk_tokens, c.created, count(d.doc_id), "
        "coalesce(sum(d.chunks), 0) FROM keel_rag_collections c LEFT JOIN keel_rag_documents d "
        f"ON d.collection = c.name {where} GROUP BY c.name ORDER BY 1",
        args,
    ).fetchall()
    keys = ("name", "tenant", "embedder", "chunk_tokens", "created", "documents", "chunks")
    return [dict(zip(keys, r, strict=True)) for r in rows]
