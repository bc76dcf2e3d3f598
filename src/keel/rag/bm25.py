"""BM25 with Lucene's scoring, in memory, with incremental add and delete.

score(q, d) = Σ_t idf(t) · tf / (tf + k1 · (1 − b + b · |d| / avgdl)),
idf(t) = ln(1 + (N − df + 0.5) / (df + 0.5))   — Lucene's (always positive) IDF.
Statistics (N, df, avgdl) are exact after every add and delete: nothing is precomputed per posting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from keel.rag.analyzer import terms
from keel.rag.index import Hits


class BM25Index:
    def __init__(self, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.ids: list[str] = []
        self.slot: dict[str, int] = {}
        self.lengths = np.zeros(0, dtype=np.float32)
        self.alive = np.zeros(0, dtype=bool)
        self.doc_terms: list[Counter[str] | None] = []
        self.postings: dict[str, tuple[list[int], list[int]]] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # numpy views, rebuilt lazily
        self.df: Counter[str] = Counter()
        self.total_length = 0.0
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self.add_counts(ids, [Counter(terms(t)) for t in texts])

    def add_counts(self, ids: Sequence[str], counts: Sequence[Counter[str]]) -> None:
        """Add pre-analysed documents (term → frequency); re-adding an id replaces it."""
        self.delete([i for i in ids if i in self.slot])
        start = len(self.ids)
        lengths = np.zeros(len(ids), dtype=np.float32)
        for offset, (chunk_id, tf) in enumerate(zip(ids, counts, strict=True)):
            slot = start + offset
            self.ids.append(chunk_id)
            self.slot[chunk_id] = slot
            self.doc_terms.append(tf)
            lengths[offset] = sum(tf.values())
            for term, n in tf.items():
                docs, freqs = self.postings.setdefault(term, ([], []))
                docs.append(slot)
                freqs.append(n)
                self._arrays.pop(term, None)
            self.df.update(tf.keys())
        self.lengths = np.concatenate([self.lengths, lengths])
        self.alive = np.concatenate([self.alive, np.ones(len(ids), dtype=bool)])
        self.total_length += float(lengths.sum())
        self.count += len(ids)

    def delete(self, ids: Sequence[str]) -> None:
        for chunk_id in ids:
            slot = self.slot.pop(chunk_id, None)
            if slot is None:
                continue
            tf = self.doc_terms[slot]
            if tf is not None:
                self.df.subtract(tf.keys())
            self.doc_terms[slot] = None
            self.alive[slot] = False
            self.total_length -= float(self.lengths[slot])
            self.count -= 1

    def term_counts(self, ids: Sequence[str]) -> list[Counter[str]]:
        out = []
        for chunk_id in ids:
            slot = self.slot.get(chunk_id)
            counts = self.doc_terms[slot] if slot is not None else None
            if counts is not None:
                out.append(counts)
        return out

    def _posting(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        found = self._arrays.get(term)
        if found is None:
            raw = self.postings.get(term)
            if raw is None:
                return None
            found = (np.asarray(raw[0], dtype=np.int64), np.asarray(raw[1], dtype=np.float32))
            self._arrays[term] = found
        return found

    def search(self, query: str, k: int) -> Hits:
        return self.search_terms(terms(query), k)

    def search_terms(self, query_terms: list[str], k: int) -> Hits:
        return self.search_weighted(dict(Counter(query_terms)), k)

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        return float(np.log(1 + (self.count - df + 0.5) / (df + 0.5))) if df > 0 else 0.0

    def search_weighted(self, weights: dict[str, float], k: int) -> Hits:
        """BM25 with a weight per query term (a term's count, or a feedback weight)."""
        if not self.count or k <= 0:
            return []
        n, avgdl = self.count, self.total_length / self.count or 1.0
        scores = np.zeros(len(self.ids), dtype=np.float32)
        norm = self.k1 * (1 - self.b + self.b * self.lengths / avgdl)
        for term, qtf in weights.items():
            df = self.df.get(term, 0)
            posting = self._posting(term) if df > 0 else None
            if posting is None:
                continue
            docs, tf = posting
            idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
            scores[docs] += qtf * idf * tf / (tf + norm[docs])
        scores[~self.alive] = 0
        hits = np.flatnonzero(scores)
        if hits.size > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        order = hits[np.argsort(-scores[hits], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in order]
