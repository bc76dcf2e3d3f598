"""Retrieval with a hosted embedder embeds through the gateway: retried, traced, priced, and with
the gateway's error classes — against the fault-injecting server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import RateLimited
from keel.rag import Collection, ingest
from keel.rag.embedder import GatewayEmbedder, make_embedder
from keel.store import Store, connect, db_path
from keel.testing import Fault, FaultServer
from tests.conftest import make_settings

CONFIG = """
deployments:
  emb: {{provider: openai, model: text-embedding-3-small, base_url: "{url}"}}
retrieval: {{embedder: emb}}
"""


def embeddings_traces(home: Path) -> list:  # type: ignore[type-arg]
    with Store.at(db_path(home)) as store:
        return store.traces.find(tenant=None, limit=100, operation="embeddings")


@pytest.fixture
def embedder(home: Path, upstream: FaultServer):  # type: ignore[no-untyped-def]
    settings = make_settings(CONFIG.format(url=upstream.base_url))
    made = make_embedder(settings, home)
    assert isinstance(made, GatewayEmbedder)
    yield made
    made.close()


def test_ingest_and_search_embed_through_the_gateway(
    embedder: GatewayEmbedder, home: Path, folder: Path, upstream: FaultServer
) -> None:
    col = Collection.create(connect(home / "rag.db"), "docs", embedder.scoped("acme"))
    report = ingest(col, [folder])
    assert len(report.indexed) == 3 and embedder.dims == 16
    calls = len(upstream.requests)
    assert col.search("kafka partitions", top_k=1)[0].doc_id == "guide/kafka.txt"
    assert upstream.requests[calls:] and upstream.requests[-1][0] == "/v1/embeddings"  # the query's vector
    embedder.close()  # flushes the gateway's trace writer
    rows = embeddings_traces(home)
    assert rows and {r.feature for r in rows} == {"retrieval"} and {r.alias for r in rows} == {"emb"}
    assert {r.tenant for r in rows} >= {"acme"}  # the probe is the default tenant's, the rest acme's
    assert all(r.status == "ok" and r.cost_usd is not None and r.cost_usd > 0 for r in rows)


def test_a_transient_fault_is_retried(embedder: GatewayEmbedder, home: Path, upstream: FaultServer) -> None:
    upstream.inject(Fault.status_code(503, retry_after=0))
    vectors = embedder.embed(["one", "two"])
    assert vectors.shape == (2, embedder.dims)
    embedder.close()
    last = embeddings_traces(home)[0]
    assert [a["error_type"] for a in last.attempts] == ["UpstreamUnavailable", None]


def test_rate_limits_are_rate_limited_not_unavailable(embedder: GatewayEmbedder, upstream: FaultServer) -> None:
    upstream.inject(*[Fault.status_code(429, retry_after=0)] * 3)
    with pytest.raises(RateLimited):
        embedder.embed(["one"])


async def test_callable_from_the_event_loop_itself(embedder: GatewayEmbedder) -> None:
    assert embedder.embed(["from a coroutine, blocking"]).shape == (1, embedder.dims)  # its own loop: no deadlock
