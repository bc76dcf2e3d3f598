"""Fusing keyword and vector results, dropping near-duplicates, and the relevance floor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    detail: dict[str, object] = field(default_factory=dict)


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
    kept_vectors: list[Vector] = []
    for hit in hits:
        vector = vector_of(hit.chunk_id)
        if vector is not None and kept_vectors and float(np.max(np.stack(kept_vectors) @ vector)) >= threshold:
            continue
        kept.append(hit)
        if vector is not None:
            kept_vectors.append(vector)
    return kept
