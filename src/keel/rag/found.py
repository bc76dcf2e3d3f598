"""A search result with everything needed to cite and highlight it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Found:
    """A search result with everything needed to cite and highlight it."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    heading_path: list[str]
    page: int | None
    start: int
    end: int
    text: str
    score: float
    keyword_score: float | None
    vector_score: float | None
    doc_rank: int | None = None  # with group_by: document, the document's rank and fused score
    doc_score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}
