"""Exact vector search (cosine on unit vectors) with incremental add and delete."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keel.rag.index import Hits, Vector


class ExactVectorIndex:
    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.ids: list[str] = []
        self.slot: dict[str, int] = {}
        self._matrix = np.zeros((0, dims), dtype=np.float32)
        self._size = 0
        self.alive = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(self.slot)

    def add(self, ids: Sequence[str], vectors: Vector) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dims or len(ids) != vectors.shape[0]:
            raise ValueError(f"expected {len(ids)} vectors of {self.dims} dims, got shape {vectors.shape}")
        self.delete([i for i in ids if i in self.slot])
        need = self._size + len(ids)
        if need > self._matrix.shape[0]:  # grow geometrically: amortised O(1) per vector
            grown = np.zeros((max(need, 2 * self._matrix.shape[0], 1024), self.dims), dtype=np.float32)
            grown[: self._size] = self._matrix[: self._size]
            self._matrix = grown
            alive = np.zeros(grown.shape[0], dtype=bool)
            alive[: self._size] = self.alive[: self._size]
            self.alive = alive
        self._matrix[self._size : need] = vectors
        self.alive[self._size : need] = True
        for offset, chunk_id in enumerate(ids):
            self.slot[chunk_id] = self._size + offset
            self.ids.append(chunk_id)
        self._size = need

    def delete(self, ids: Sequence[str]) -> None:
        for chunk_id in ids:
            slot = self.slot.pop(chunk_id, None)
            if slot is not None:
                self.alive[slot] = False

    def vector(self, chunk_id: str) -> Vector | None:
        slot = self.slot.get(chunk_id)
        return None if slot is None else self._matrix[slot]

    def search(self, query: Vector, k: int) -> Hits:
        if not self.slot or k <= 0:
            return []
        scores = self._matrix[: self._size] @ np.asarray(query, dtype=np.float32)
        if len(self.slot) < self._size:  # deleted slots never rank
            scores[~self.alive[: self._size]] = -np.inf
        k = min(k, len(self.slot))
        top = np.argpartition(scores, scores.size - k)[-k:] if k < scores.size else np.arange(scores.size)
        order = top[np.argsort(-scores[top], kind="stable")]
        ids, values = self.ids, scores[order].tolist()
        return [(ids[i], v) for i, v in zip(order.tolist(), values, strict=True)]
