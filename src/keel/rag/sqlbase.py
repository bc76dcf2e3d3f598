"""What the SQLite and Postgres collections share: their reads, in one SQL text for both dialects."""

from __future__ import annotations

import difflib
import hashlib
from collections import Counter
from typing import Any

import numpy as np
import orjson

from keel.rag.analyzer import terms
from keel.rag.chunking import chunk_document
from keel.rag.documents import Chunk, Document
from keel.rag.embedder import TextEmbedder
from keel.rag.found import Found
from keel.rag.index import Vector
from keel.rag.retrieve import Hit
from keel.rag.search import KeywordSearch, VectorSearch, run_search


class SQLCollection:
    """Subclasses set the placeholder and table names and fill the attributes below."""

    placeholder = "?"
    collections_table = "rag_collections"
    documents_table = "rag_documents"
    chunks_table = "rag_chunks"
    cache_table = "rag_embed_cache"

    conn: Any
    name: str
    embedder: TextEmbedder
    keyword: Any
    vectors: Any
    rerank: str
    label: str

    def _sql(self, text: str) -> str:
        return text.format(
            p=self.placeholder,
            collections=self.collections_table,
            docs=self.documents_table,
            chunks=self.chunks_table,
            cache=self.cache_table,
        )

    @staticmethod
    def validate_rerank(spec: str) -> None:
        from keel.errors import UserError
        from keel.rag.plugins import RERANKERS

        kind = spec.split(":", 1)[0]
        if kind not in RERANKERS.names():
            close = difflib.get_close_matches(kind, RERANKERS.names(), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UserError(
                f"unknown reranker '{spec}': use none, llm[:model], cross-encoder:MODEL.onnx:TOKENIZER.json "
                f"or a registered one ({', '.join(RERANKERS.names())}){hint}"
            )
        if kind == "cross-encoder" and len(spec.split(":")) != 3:
            raise UserError("a cross-encoder reranker is cross-encoder:<model.onnx>:<tokenizer.json>")

    def set_rerank(self, spec: str) -> None:
        """Choose this collection's reranker: none, llm[:model] or cross-encoder:<model.onnx>:<tokenizer.json>."""
        self.validate_rerank(spec)
        self.conn.execute(self._sql("UPDATE {collections} SET rerank = {p} WHERE name = {p}"), (spec, self.name))
        self.rerank = spec

    def document_hash(self, doc_id: str) -> str | None:
        row = self.conn.execute(
            self._sql("SELECT hash FROM {docs} WHERE collection = {p} AND doc_id = {p}"), (self.name, doc_id)
        ).fetchone()
        return None if row is None else str(row[0])

    def document_ids(self) -> set[str]:
        rows = self.conn.execute(self._sql("SELECT doc_id FROM {docs} WHERE collection = {p}"), (self.name,))
        return {r[0] for r in rows}

    def index_version(self) -> str:
        """A stamp of what the collection holds and how it searches — documents, when they were last
        indexed, the embedder and the reranker — that any ingest, change or removal moves (what the
        answer and eval caches key on). One aggregate query."""
        row = self.conn.execute(
            self._sql("SELECT count(*), coalesce(max(indexed), 0) FROM {docs} WHERE collection = {p}"), (self.name,)
        ).fetchone()
        stamp = f"{self.name}|{self.embedder.name}|{self.rerank}|{int(row[0])}|{float(row[1]):.6f}"
        return hashlib.sha256(stamp.encode()).hexdigest()[:16]

    def list_documents(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            self._sql(
                "SELECT doc_id, source, kind, title, hash, chunks, indexed FROM {docs} WHERE collection = {p} "
                "ORDER BY doc_id"
            ),
            (self.name,),
        ).fetchall()
        keys = ("doc_id", "source", "kind", "title", "hash", "chunks", "indexed")
        return [dict(zip(keys, tuple(r), strict=True)) for r in rows]

    def _embed_cached(self, chunks: list[Chunk]) -> Vector:
        """Vectors for chunks, embedding only those whose text (hash) has never been embedded."""
        hashes = [c.hash for c in chunks]
        found: dict[str, bytes] = {}
        for start in range(0, len(hashes), 500):
            batch = hashes[start : start + 500]
            marks = ",".join([self.placeholder] * len(batch))
            rows = self.conn.execute(
                self._sql("SELECT hash, vector FROM {cache} WHERE model = {p} AND hash IN (") + marks + ")",
                (self.embedder.name, *batch),
            )
            found.update({h: bytes(v) for h, v in rows})
        missing = [i for i, h in enumerate(hashes) if h not in found]
        if missing:
            fresh = self.embedder.embed([chunks[i].embed_text for i in missing])
            for i, vector in zip(missing, fresh, strict=True):
                found[hashes[i]] = vector.astype(np.float32).tobytes()
        return np.stack([np.frombuffer(found[h], dtype=np.float32) for h in hashes])

    chunk_tokens: int
    overlap: int

    def _prepare(self, doc: Document) -> tuple[list[Chunk], Vector, list[Counter[str]]]:
        """Chunk a document, embed its chunks (cache first) and analyse them for BM25."""
        chunks = chunk_document(doc, self.embedder.token_counts, budget=self.chunk_tokens, overlap=self.overlap)
        vectors = self._embed_cached(chunks) if chunks else np.zeros((0, self.embedder.dims), np.float32)
        return chunks, vectors, [Counter(terms(c.embed_text)) for c in chunks]

    def _chunk_row(self, c: Chunk) -> tuple[Any, ...]:
        return (
            self.name,
            c.id,
            c.doc_id,
            c.ordinal,
            c.text,
            orjson.dumps(list(c.heading_path)).decode(),
            c.page,
            c.start,
            c.end,
            c.tokens,
        )

    def _kind_of(self, doc_id: str) -> str | None:
        row = self.conn.execute(
            self._sql("SELECT kind FROM {docs} WHERE collection = {p} AND doc_id = {p}"), (self.name, doc_id)
        ).fetchone()
        return None if row is None else str(row[0])

    def _materialise(self, hits: list[Hit]) -> list[Found]:
        if not hits:
            return []
        marks = ",".join([self.placeholder] * len(hits))
        rows = self.conn.execute(
            self._sql(
                "SELECT c.chunk_id, c.doc_id, c.text, c.heading_path, c.page, c.start_offset, c.end_offset, d.source, "
                "d.title FROM {chunks} c JOIN {docs} d ON d.collection = c.collection AND d.doc_id = c.doc_id "
                "WHERE c.collection = {p} AND c.chunk_id IN ("
            )
            + marks
            + ")",
            (self.name, *[h.chunk_id for h in hits]),
        ).fetchall()
        by_id = {r[0]: r for r in rows}
        out = []
        for h in hits:
            r = by_id.get(h.chunk_id)
            if r is None:  # deleted by another writer since the indexes were read
                continue
            path = orjson.loads(r[3]) if isinstance(r[3], str | bytes) else list(r[3])
            out.append(
                Found(
                    h.chunk_id,
                    r[1],
                    r[7] or "",
                    r[8] or "",
                    path,
                    r[4],
                    r[5],
                    r[6],
                    r[2],
                    h.score,
                    h.keyword_score,
                    h.vector_score,
                )
            )
        return out

    def _indexes(self) -> tuple[KeywordSearch, VectorSearch]:
        return self.keyword, self.vectors

    def search(self, query: str, **options: Any) -> list[Found]:
        """Ranked chunks; see ``keel.rag.search.run_search`` for the options."""
        keyword, vectors = self._indexes()
        return run_search(
            query,
            name=self.label,  # spans show the name its tenant gave it
            keyword_index=keyword,
            vector_index=vectors,
            embedder=self.embedder,
            fetch=self._materialise,
            kind_of=self._kind_of,
            **options,
        )
