"""The search pipeline, shared by every collection backend: keyword and vector search, fusion,
pseudo-relevance feedback, the relevance floor, dedup, and the retrieval span."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from keel.errors import UserError
from keel.rag.analyzer import terms
from keel.rag.embedder import TextEmbedder
from keel.rag.found import Found
from keel.rag.grouping import GROUP_BY, Aggregate, GroupBy, best_chunks, doc_of
from keel.rag.index import Hits, Vector
from keel.rag.retrieve import Feedback, Hit, convex, dedup, expand_terms, feedback_docs, rocchio, rrf
from keel.tracing.tracer import CURRENT_ROOT, CURRENT_RUN, SpanData, Tracer

Mode = Literal["hybrid", "keyword", "vector"]
DEFAULT_FEEDBACK = Feedback()


class KeywordSearch(Protocol):
    def search(self, query: str, k: int) -> Hits: ...

    def search_weighted(self, weights: dict[str, float], k: int) -> Hits: ...

    def term_counts(self, ids: list[str]) -> list[Counter[str]]: ...

    def idfs(self, terms_: set[str]) -> dict[str, float]: ...


class VectorSearch(Protocol):
    def search(self, query: Vector, k: int) -> Hits: ...

    def vector(self, chunk_id: str) -> Vector | None: ...


@dataclass(frozen=True, slots=True)
class Filters:
    """Metadata filters: keep chunks of these documents, under this id prefix, of these kinds."""

    doc_ids: frozenset[str] | None = None
    doc_prefix: str | None = None
    kinds: frozenset[str] | None = None

    def __post_init__(self) -> None:
        unknown = (self.kinds or frozenset()) - {"md", "txt", "html", "pdf"}
        if unknown:
            raise UserError(f"unknown document kind(s) {sorted(unknown)}: use md, txt, html or pdf")

    def allows(self, doc_id: str, kind: str | None) -> bool:
        if self.doc_ids is not None and doc_id not in self.doc_ids:
            return False
        if self.doc_prefix is not None and not doc_id.startswith(self.doc_prefix):
            return False
        return self.kinds is None or kind in self.kinds


class _Stopwatch:
    """Per-stage milliseconds for the retrieval span."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into
        self.started: dict[str, float] = {}

    def start(self, name: str) -> None:
        self.started[name] = time.perf_counter()

    def stop(self, name: str) -> None:
        self.into[name] = self.into.get(name, 0.0) + (time.perf_counter() - self.started.pop(name)) * 1000

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.start(name)
        try:
            yield
        finally:
            self.stop(name)


def run_search(
    query: str,
    *,
    name: str,
    keyword_index: KeywordSearch,
    vector_index: VectorSearch,
    embedder: TextEmbedder,
    fetch: Callable[[list[Hit]], list[Found]],
    top_k: int = 5,
    mode: Mode = "hybrid",
    min_score: float | None = None,
    fusion: Literal["rrf", "convex"] = "rrf",
    alpha: float = 0.5,
    candidates: int = 100,
    dedup_threshold: float = 0.97,
    feedback: Feedback | None = DEFAULT_FEEDBACK,
    tracer: Tracer | None = None,
    filters: Filters | None = None,
    kind_of: Callable[[str], str | None] | None = None,
    group_by: GroupBy = "chunk",
    per_document: int = 2,
    aggregate: Aggregate = Aggregate(),
) -> list[Found]:
    """Ranked chunks. Hybrid fuses BM25 and vector results (RRF by default), applies pseudo-relevance
    feedback (``feedback=None`` turns it off), drops near-duplicates, and keeps hits whose cosine
    similarity to the query is at least ``min_score``. ``group_by: document``: ``top_k`` documents,
    each ranked on its chunks' evidence in each retriever before fusion (keel.rag.grouping), each with
    its best ``per_document`` chunks in a row (``doc_rank``, ``doc_score`` on each)."""
    if not query.strip():
        raise UserError("the query is empty")
    if not 1 <= top_k <= 1000:
        raise UserError("top_k must be between 1 and 1000")
    if group_by not in GROUP_BY:
        raise UserError(f"group_by must be {' or '.join(GROUP_BY)}, not {group_by!r}")
    if per_document < 1:
        raise UserError("per_document must be at least 1")
    grouped = group_by == "document"
    timings: dict[str, float] = {}
    clock = _Stopwatch(timings)
    started_ns = time.time_ns()
    pool = max(candidates, top_k * (per_document + 1 if grouped else 1)) * (5 if filters is not None else 1)

    def allowed(chunk_id: str) -> bool:
        assert filters is not None
        return filters.allows(doc_of(chunk_id), kind_of(doc_of(chunk_id)) if kind_of else None)

    def keep(found_hits: list[Hit]) -> list[Hit]:
        return found_hits if filters is None else [h for h in found_hits if allowed(h.chunk_id)]

    def keep_pairs(found_hits: Hits) -> Hits:
        return found_hits if filters is None else [(c, s) for c, s in found_hits if allowed(c)]

    with clock("keyword_ms"):
        keyword = keyword_index.search(query, pool) if mode in ("hybrid", "keyword") else []
    with clock("embed_ms"):
        wants_vector = mode in ("hybrid", "vector") or min_score is not None
        qvec = embedder.embed([query])[0] if wants_vector else None
    with clock("vector_ms"):
        vector = vector_index.search(qvec, pool) if qvec is not None and mode != "keyword" else []

    def fuse(kw: Hits, vec: Hits) -> list[Hit]:
        if mode == "keyword":
            return [Hit(cid, s, keyword_rank=i, keyword_score=s) for i, (cid, s) in enumerate(kw, 1)]
        if mode == "vector":
            return [Hit(cid, s, vector_rank=i, vector_score=s) for i, (cid, s) in enumerate(vec, 1)]
        return rrf(kw, vec) if fusion == "rrf" else convex(kw, vec, alpha=alpha)

    hits = keep(fuse(keyword, vector))
    top = feedback_docs(hits, feedback.docs) if mode == "hybrid" and feedback is not None and qvec is not None else []
    if top and feedback is not None and qvec is not None:
        with clock("feedback_ms"):
            keyword, vector = _expanded(query, qvec, top, feedback, keyword_index, vector_index, pool)
            hits = keep(fuse(keyword, vector))
    ranks: dict[str, tuple[int, float]] = {}
    if grouped:
        documents = fuse(aggregate.documents(keep_pairs(keyword)), aggregate.documents(keep_pairs(vector)))

        def floor(chunks: list[Hit], n: int) -> list[Hit]:
            return _floored(chunks, qvec, vector_index, min_score, limit=n)

        best = best_chunks(documents, hits, per_document, most=top_k * 2, keep=floor)  # floored as far as read
        shortlist = [c for _, chunks in best for c in chunks]
        with clock("dedup_ms"):
            kept = dedup(shortlist, vector_index.vector, threshold=dedup_threshold)
        picked = best_chunks(documents, kept, per_document, most=top_k)
        ranks = {c.chunk_id: (rank, doc.score) for rank, (doc, chunks) in enumerate(picked, 1) for c in chunks}
        hits = [c for _, chunks in picked for c in chunks]
    else:
        selected = _floored(hits, qvec, vector_index, min_score, limit=top_k * 3)
        with clock("dedup_ms"):
            hits = dedup(selected, vector_index.vector, threshold=dedup_threshold)[:top_k]
    found = fetch(hits)
    for f in found:
        f.doc_rank, f.doc_score = ranks.get(f.chunk_id, (None, None))
    if tracer is not None:
        attrs: dict[str, Any] = {
            "keel.collection": name,
            "keel.retrieval.mode": mode,
            "keel.retrieval.top_k": top_k,
            "keel.retrieval.ids": [f.chunk_id for f in found],
            "keel.retrieval.scores": [round(f.score, 6) for f in found],
            **{f"keel.retrieval.{k}": round(v, 3) for k, v in timings.items()},
        }
        run = CURRENT_RUN.get()  # inside a feature run, the retrieval span is its child
        span_id = uuid.uuid4().hex
        root = CURRENT_ROOT.get() or run or span_id
        tracer.emit(SpanData(f"retrieval {name}", span_id, root, run, started_ns, time.time_ns(), attrs, "internal"))
    return found


def _expanded(
    query: str,
    qvec: Vector,
    top: list[str],
    feedback: Feedback,
    keyword_index: KeywordSearch,
    vector_index: VectorSearch,
    pool: int,
) -> tuple[Hits, Hits]:
    """Pseudo-relevance feedback: the keyword query expanded with the top documents' terms (RM3-like)
    and the query vector moved toward theirs (Rocchio), each searched again."""
    counts = keyword_index.term_counts(top)
    idf = keyword_index.idfs({term for c in counts for term in c})  # one lookup, not one per term
    weights = expand_terms(
        Counter(terms(query)), counts, idf.__getitem__, n_terms=feedback.terms, weight=feedback.weight
    )
    moved = rocchio(qvec, [v for v in map(vector_index.vector, top) if v is not None], feedback.beta)
    return keyword_index.search_weighted(weights, pool), vector_index.search(moved, pool)


def _floored(
    hits: list[Hit], qvec: Vector | None, vector_index: VectorSearch, min_score: float | None, *, limit: int
) -> list[Hit]:
    """The hits over the relevance floor, walking the ranking only as far as needed: cosine scores
    for the hits we may keep, not all of them."""
    selected: list[Hit] = []
    for hit in hits:
        if qvec is not None and hit.vector_score is None:
            v = vector_index.vector(hit.chunk_id)
            hit.vector_score = float(v @ qvec) if v is not None else None
        if min_score is not None and (hit.vector_score is None or hit.vector_score < min_score):
            continue
        selected.append(hit)
        if len(selected) >= limit:
            break
    return selected
