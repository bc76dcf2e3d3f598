"""Retrieval's pluggable kinds, built-ins included, each through one door (``keel.registry``):

- ``RERANKERS`` (entry points ``keel.rerankers``): ``spec → Reranker`` factories, named by the part of
  a collection's ``rerank`` before the first colon (``llm:fast`` → ``llm`` with ``fast``);
- ``BACKENDS`` (entry points ``keel.retrieval_backends``): ``(settings, home) → CollectionStore``,
  named by ``retrieval.backend``.
"""

from __future__ import annotations

from typing import Any

from keel.registry import Registry

RERANKERS: Registry[Any] = Registry(
    "reranker",
    "keel.rerankers",
    {
        "none": "keel.rag.rerank:no_reranker",
        "llm": "keel.rag.rerank:llm_reranker",
        "cross-encoder": "keel.rag.rerank:cross_encoder_reranker",
    },
)

BACKENDS: Registry[Any] = Registry(
    "retrieval backend",
    "keel.retrieval_backends",
    {
        "embedded": "keel.rag.backends:SqliteCollections",
        "postgres": "keel.rag.backends:PostgresCollections",
    },
)
