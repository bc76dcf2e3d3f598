"""The index contracts: add and delete by chunk id, search → (id, score). Every implementation
passes the one conformance suite in ``tests/rag/conformance.py``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
Hits = list[tuple[str, float]]


class KeywordIndex(Protocol):
    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def search(self, query: str, k: int) -> Hits: ...


class VectorIndex(Protocol):
    def add(self, ids: Sequence[str], vectors: Vector) -> None: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def search(self, query: Vector, k: int) -> Hits: ...
