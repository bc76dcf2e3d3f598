"""Approximate vector search (HNSW, via usearch) and the adaptive index collections use:
exact search up to a size threshold, HNSW above it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keel.rag.index import Hits, Vector
from keel.rag.vectors import ExactVectorIndex

DEFAULT_THRESHOLD = 100_000


class HNSWVectorIndex:
    """Cosine HNSW with f16 storage (half the memory of exact float32)."""

    def __init__(
        self, dims: int, *, connectivity: int = 16, expansion_add: int = 128, expansion_search: int = 256
    ) -> None:
        from usearch.index import Index

        self.dims = dims
        self._index = Index(
            ndim=dims,
            metric="cos",
            dtype="f16",
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )
        self.keys: dict[str, int] = {}
        self.ids: dict[int, str] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, ids: Sequence[str], vectors: Vector) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dims or len(ids) != vectors.shape[0]:
            raise ValueError(f"expected {len(ids)} vectors of {self.dims} dims, got shape {vectors.shape}")
        self.delete([i for i in ids if i in self.keys])
        keys = np.arange(self._next, self._next + len(ids), dtype=np.uint64)
        self._next += len(ids)
        if len(ids):
            self._index.add(keys, vectors)
        for key, chunk_id in zip(keys.tolist(), ids, strict=True):
            self.keys[chunk_id] = key
            self.ids[key] = chunk_id

    def delete(self, ids: Sequence[str]) -> None:
        for chunk_id in ids:
            key = self.keys.pop(chunk_id, None)
            if key is not None:
                self.ids.pop(key, None)
                self._index.remove(key)

    def vector(self, chunk_id: str) -> Vector | None:
        key = self.keys.get(chunk_id)
        if key is None:
            return None
        found = self._index.get(key)
        return None if found is None else np.asarray(found, dtype=np.float32).reshape(-1)

    def search(self, query: Vector, k: int) -> Hits:
        if not self.keys or k <= 0:
            return []
        matches = self._index.search(np.asarray(query, dtype=np.float32), min(k, len(self.keys)))
        return [
            (self.ids[int(key)], 1.0 - float(dist))
            for key, dist in zip(matches.keys, matches.distances, strict=True)
            if int(key) in self.ids
        ]


class AdaptiveVectorIndex:
    """Exact up to ``threshold`` vectors (exact is faster and perfect there), HNSW beyond."""

    def __init__(self, dims: int, *, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.dims = dims
        self.threshold = threshold
        self.impl: ExactVectorIndex | HNSWVectorIndex = ExactVectorIndex(dims)

    def __len__(self) -> int:
        return len(self.impl)

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self.impl, HNSWVectorIndex) else "exact"

    def add(self, ids: Sequence[str], vectors: Vector) -> None:
        self.impl.add(ids, vectors)
        if isinstance(self.impl, ExactVectorIndex) and len(self.impl) > self.threshold:
            exact = self.impl
            live = list(exact.slot)
            hnsw = HNSWVectorIndex(self.dims)
            for start in range(0, len(live), 50_000):
                batch = live[start : start + 50_000]
                hnsw.add(batch, np.stack([exact.vector(i) for i in batch]))  # type: ignore[misc]
            self.impl = hnsw

    def delete(self, ids: Sequence[str]) -> None:
        self.impl.delete(ids)

    def vector(self, chunk_id: str) -> Vector | None:
        return self.impl.vector(chunk_id)

    def search(self, query: Vector, k: int) -> Hits:
        return self.impl.search(query, k)
