"""Fusing keyword and vector results, dropping near-duplicates, and the relevance floor."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from keel.rag.index import Hits, Vector


@dataclass(slots=True)
class Hit:
    chunk_id: str
    score: float
    keyword_rank: int | None = None
    vector_rank: int | None = None
    keyword_score: float | None = None
    vector_score: float | None = None  # cosine similarity to the query


def rrf(keyword: Hits, vector: Hits, *, k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion: score = Σ 1 / (k + rank), ranks from 1."""
    fused: dict[str, Hit] = {}
    for rank, (chunk_id, score) in enumerate(keyword, start=1):
        hit = fused.setdefault(chunk_id, Hit(chunk_id, 0.0))
        hit.score += 1.0 / (k + rank)
        hit.keyword_rank, hit.keyword_score = rank, score
    for rank, (chunk_id, score) in enumerate(vector, start=1):
        hit = fused.setdefault(chunk_id, Hit(chunk_id, 0.0))
        hit.score += 1.0 / (k + rank)
        hit.vector_rank, hit.vector_score = rank, score
    return sorted(fused.values(), key=lambda h: -h.score)


def convex(keyword: Hits, vector: Hits, *, alpha: float = 0.5) -> list[Hit]:
    """Weighted combination of min-max normalised scores: alpha · vector + (1 − alpha) · keyword."""

    def normalise(hits: Hits) -> dict[str, float]:
        if not hits:
            return {}
        values = np.array([s for _, s in hits], dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        span = hi - lo or 1.0
        return {cid: (s - lo) / span for cid, s in hits}

    kw, vec = normalise(keyword), normalise(vector)
    raw_kw, raw_vec = dict(keyword), dict(vector)
    out = [
        Hit(
            cid,
            alpha * vec.get(cid, 0.0) + (1 - alpha) * kw.get(cid, 0.0),
            keyword_score=raw_kw.get(cid),
            vector_score=raw_vec.get(cid),
        )
        for cid in {*kw, *vec}
    ]
    return sorted(out, key=lambda h: -h.score)


def dedup(hits: list[Hit], vector_of: Callable[[str], Vector | None], *, threshold: float = 0.97) -> list[Hit]:
    """Drop a hit whose embedding is nearly identical to a better-ranked hit's."""
    kept: list[Hit] = []
    matrix: np.ndarray | None = None  # the kept hits' vectors, one row each
    used = 0
    for hit in hits:
        vector = vector_of(hit.chunk_id)
        if vector is not None and used and float(np.max(matrix[:used] @ vector)) >= threshold:  # type: ignore[index]
            continue
        kept.append(hit)
        if vector is not None:
            if matrix is None:
                matrix = np.empty((len(hits), vector.shape[0]), dtype=np.float32)
            matrix[used] = vector
            used += 1
    return kept


@dataclass(frozen=True, slots=True)
class Feedback:
    """Pseudo-relevance feedback: the top fused hits are assumed relevant and sharpen both queries
    (RM3-style term expansion for BM25, Rocchio for the dense vector), then both searches run again.
    On Cranfield every setting of a 12-point grid gained 1.2–2.1 nDCG@10 points over plain RRF; these
    defaults sit mid-grid, not at its best point."""

    docs: int = 3
    beta: float = 0.5
    terms: int = 10
    weight: float = 0.5


def feedback_docs(hits: list[Hit], n: int) -> list[str]:
    """The hits feedback may learn from: the best ``n`` that *both* retrievers found. (On a small
    collection the plain top ``n`` is nearly everything, and feedback would import unrelated terms.)"""
    return [h.chunk_id for h in hits if h.keyword_rank is not None and h.vector_rank is not None][:n]


def rocchio(query: Vector, relevant: list[Vector], beta: float) -> Vector:
    if not relevant:
        return query
    moved = query + beta * np.mean(np.stack(relevant), axis=0)
    norm = float(np.linalg.norm(moved))
    return (moved / norm).astype(np.float32) if norm else query


def expand_terms(
    query: Counter[str], relevant: list[Counter[str]], idf: Callable[[str], float], *, n_terms: int, weight: float
) -> dict[str, float]:
    """Query term weights plus the feedback documents' strongest terms (length-normalised tf × idf)."""
    scored: dict[str, float] = {}
    for doc in relevant:
        total = sum(doc.values()) or 1
        for term, count in doc.items():
            scored[term] = scored.get(term, 0.0) + count / total * idf(term)
    weights = {term: float(n) for term, n in query.items()}
    best = sorted(scored.items(), key=lambda item: -item[1])[:n_terms]
    top = best[0][1] if best else 1.0
    for term, score in best:
        weights[term] = weights.get(term, 0.0) + weight * score / top
    return weights
