"""Retrieval as one call, and the kinds that plug into it through the registries."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from keel.errors import ConfigError, UserError
from keel.rag import Collection, ingest
from keel.rag.embedder import LocalMiniLM
from keel.rag.plugins import BACKENDS, RERANKERS
from keel.rag.rerank import RerankEnv
from keel.rag.retrieval import Query, retrieve
from keel.registry import Registry
from keel.store import connect


class ByLength:
    """A plugin reranker: the longest passage first (``length:asc`` reverses it)."""

    name = "length"

    def __init__(self, arg: str) -> None:
        self.sign = 1.0 if arg == "asc" else -1.0

    async def scores(self, query: str, passages: list[str]) -> list[float | None]:
        return [-self.sign * len(p) for p in passages]


def by_length(arg: str, env: RerankEnv) -> ByLength:
    return ByLength(arg)


@pytest.fixture
def collection(tmp_path: Path, minilm: LocalMiniLM, folder: Path) -> Collection:
    col = Collection.create(connect(tmp_path / "k.db"), "docs", minilm)
    ingest(col, [folder])
    return col


async def test_retrieve_searches_in_a_worker_thread_and_cuts_to_top_k(collection: Collection) -> None:
    threads: list[str] = []

    async def run(fn):  # type: ignore[no-untyped-def]
        def recorded():  # type: ignore[no-untyped-def]
            threads.append(threading.current_thread().name)
            return fn()

        import anyio.to_thread

        return await anyio.to_thread.run_sync(recorded)

    found = await retrieve(collection, Query("rotate an api key", top_k=2), run=run)
    assert [f.doc_id for f in found][:1] == ["keys.md"] and len(found) <= 2
    assert threads and threads[0] != threading.current_thread().name


async def test_a_registered_reranker_is_used_like_a_built_in(collection: Collection) -> None:
    RERANKERS.register("length", by_length)
    collection.set_rerank("length")  # validated against the registry
    query = Query("key refund kafka partitions", top_k=3, mode="keyword")
    longest = await retrieve(collection, query)
    shortest = await retrieve(collection, Query(query.text, top_k=3, mode="keyword", rerank="length:asc"))
    assert [len(f.text) for f in longest] == sorted((len(f.text) for f in longest), reverse=True)
    assert [len(f.text) for f in shortest] == sorted(len(f.text) for f in shortest)
    with pytest.raises(UserError, match=r"unknown reranker 'lenght'.*length"):
        collection.set_rerank("lenght")


def test_unknown_names_say_what_is_known_and_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"retrieval.backend: unknown retrieval backend 'postgre' \(known: embedded, "
                       r"postgres\); did you mean 'postgres'\?"):  # fmt: skip
        BACKENDS.get("postgre", where="retrieval.backend")
    broken: Registry[object] = Registry("widget", "keel.widgets", {"bad": "keel.nowhere:thing"})
    with pytest.raises(ConfigError, match=r"cannot load 'keel\.nowhere:thing'"):
        broken.get("bad")
