"""A feature run's steps as its trace keeps them — input guards, cache, retrieval, prompt, generation,
output guards — each with when it started (ms after the run did), how long it took, and what it found
(the chunks retrieved with their scores, the guard scores, the re-asks). The trace page draws them as
the run's span tree and timeline, beside the model calls (its child rows)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from keel.rag.found import Found
from keel.tracing.redact import capture
from keel.types import CallContext

SNIPPET = 280  # characters of a retrieved chunk a trace keeps (under the capture policy)


@contextmanager
def step(ctx: CallContext, name: str, *, on: bool = True, **found: Any) -> Iterator[dict[str, Any]]:
    """Time a step of ``ctx``'s run; what it found goes in the yielded dict. A step the feature does
    not configure (``on`` false) is not recorded."""
    if not on:
        yield found
        return
    began = time.time()
    entry: dict[str, Any] = {"name": name, "at_ms": round((began - ctx.started) * 1000, 3), "found": found}
    try:
        yield found
    except BaseException as exc:
        entry["error"] = type(exc).__name__
        raise
    finally:
        entry["ms"] = round((time.time() - began) * 1000, 3)
        ctx.steps.append(entry)


def retrieved(collection: str, sources: Sequence[Found], capture_policy: str) -> dict[str, Any]:
    """What a retrieval step keeps: each chunk's id, document, title, scores, and the start of its text
    (under the trace's capture policy, like every content a trace keeps)."""
    chunks = []
    for s in sources:
        chunk: dict[str, Any] = {
            "id": s.chunk_id,
            "doc": s.doc_id,
            "title": s.title,
            "score": round(s.score, 4),
            "keyword": None if s.keyword_score is None else round(s.keyword_score, 4),
            "vector": None if s.vector_score is None else round(s.vector_score, 4),
        }
        text = capture(s.text[:SNIPPET], capture_policy)
        if text is not None:
            chunk["text"] = text
        chunks.append(chunk)
    return {"collection": collection, "chunks": chunks}
