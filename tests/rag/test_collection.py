from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from keel.errors import UserError
from keel.rag import Collection, ingest
from keel.rag.embedder import LocalMiniLM
from keel.store import connect
from tests.rag.conftest import DOCS


class CountingEmbedder:
    """The real local embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: LocalMiniLM) -> None:
        self.inner = inner
        self.name, self.dims = inner.name, inner.dims
        self.embedded = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.embedded += len(texts)
        return self.inner.embed(texts)

    def token_counts(self, texts: list[str]) -> list[int]:
        return self.inner.token_counts(texts)


@pytest.fixture
def collection(tmp_path: Path, minilm: LocalMiniLM) -> Collection:
    return Collection.create(connect(tmp_path / "k.db"), "docs", CountingEmbedder(minilm))  # type: ignore[arg-type]


def test_ingest_search_and_cite(collection: Collection, folder: Path) -> None:
    report = ingest(collection, [folder])
    assert sorted(report.indexed) == ["billing.md", "guide/kafka.txt", "keys.md"] and report.chunks == 4
    found = collection.search("how do I rotate my API key?", top_k=2)
    top = found[0]
    assert top.doc_id == "keys.md" and top.heading_path == ["API keys", "Rotating"]
    assert top.source.endswith("keys.md") and top.title == "API keys"
    original = (folder / "keys.md").read_text()
    assert original[top.start : top.end] == top.text  # offsets highlight the cited span


def test_reingest_touches_only_what_changed_and_sync_removes(collection: Collection, folder: Path) -> None:
    ingest(collection, [folder])
    embedder = collection.embedder
    assert isinstance(embedder, CountingEmbedder)
    before = embedder.embedded
    again = ingest(collection, [folder])
    assert sorted(again.unchanged) == ["billing.md", "guide/kafka.txt", "keys.md"] and embedder.embedded == before
    (folder / "billing.md").write_text("# Billing\n\nInvoices are emailed monthly. Refunds now take ten days.\n")
    changed = ingest(collection, [folder])
    assert changed.indexed == ["billing.md"] and embedder.embedded == before + 1
    assert "ten days" in collection.search("refund time", top_k=1)[0].text
    (folder / "guide" / "kafka.txt").unlink()
    synced = ingest(collection, [folder], sync=True)
    assert synced.removed == ["guide/kafka.txt"]
    assert all(f.doc_id != "guide/kafka.txt" for f in collection.search("kafka partitions", top_k=5))


def test_same_text_under_another_id_reuses_cached_embeddings(
    collection: Collection, folder: Path, tmp_path: Path
) -> None:
    ingest(collection, [folder])
    embedder = collection.embedder
    assert isinstance(embedder, CountingEmbedder)
    before = embedder.embedded
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "keys-copy.md").write_text(DOCS["keys.md"])
    ingest(collection, [copy])
    assert embedder.embedded == before


def test_bad_files_are_skipped_and_the_rest_goes_on(collection: Collection, folder: Path) -> None:
    (folder / "empty.md").write_text("")
    (folder / "broken.pdf").write_bytes(b"%PDF garbage")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8")
    report = ingest(collection, [folder])
    reasons = dict((Path(p).name, r) for p, r in report.skipped)
    assert set(reasons) == {"empty.md", "broken.pdf", "photo.jpg"}
    assert "empty" in reasons["empty.md"] and "PDF" in reasons["broken.pdf"] and "unsupported" in reasons["photo.jpg"]
    assert len(report.indexed) == 3


def test_a_failure_mid_document_leaves_the_previous_version(collection: Collection, folder: Path) -> None:
    ingest(collection, [folder])
    (folder / "keys.md").write_text("# API keys\n\nCompletely new text about rotation.\n")
    embedder = collection.embedder

    def explode(texts: list[str]) -> np.ndarray:
        raise KeyboardInterrupt  # Ctrl-C while embedding

    original = embedder.embed
    embedder.embed = explode  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        ingest(collection, [folder])
    embedder.embed = original  # type: ignore[method-assign]
    fresh = Collection(collection.conn, "docs", embedder)
    assert "24 hours" in " ".join(f.text for f in fresh.search("rotate api key", top_k=3))


def test_other_connections_see_changes(collection: Collection, folder: Path, tmp_path: Path) -> None:
    reader = Collection(connect(tmp_path / "k.db"), "docs", collection.embedder)
    assert reader.search("kafka", top_k=1) == []
    ingest(collection, [folder])
    assert reader.search("kafka rebalance", top_k=1)[0].doc_id == "guide/kafka.txt"


def test_concurrent_ingests_into_one_collection(tmp_path: Path, minilm: LocalMiniLM) -> None:
    roots = []
    for n in range(2):
        root = tmp_path / f"part{n}"
        root.mkdir()
        for i in range(6):
            (root / f"doc{n}-{i}.md").write_text(f"# Doc {n}-{i}\n\nTopic {n} item {i} about subject {i * n}.\n")
        roots.append(root)
    Collection.create(connect(tmp_path / "k.db"), "shared", minilm)
    errors: list[BaseException] = []

    def run(root: Path) -> None:
        try:
            ingest(Collection(connect(tmp_path / "k.db"), "shared", minilm), [root])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in roots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = Collection(connect(tmp_path / "k.db"), "shared", minilm)
    assert len(final.document_ids()) == 12 and len(final.keyword) == 12 == len(final.vectors)


def test_queries_and_names_are_checked(collection: Collection, folder: Path, tmp_path: Path) -> None:
    ingest(collection, [folder])
    with pytest.raises(UserError, match="empty"):
        collection.search("   ")
    with pytest.raises(UserError, match="top_k"):
        collection.search("key", top_k=0)
    long_query = " ".join(["rotate", "api", "key"] * 1500)
    assert collection.search(long_query, top_k=1)[0].doc_id == "keys.md"
    assert collection.search("quantum chromodynamics lattice", top_k=3, min_score=0.5) == []
    with pytest.raises(UserError, match="no collection"):
        Collection(collection.conn, "missing", collection.embedder)
    with pytest.raises(UserError, match="not a collection name"):
        Collection.create(collection.conn, "../etc", collection.embedder)
    with pytest.raises(UserError, match="no such file"):
        ingest(collection, [tmp_path / "nowhere"])


def test_retrieval_is_a_span_with_stage_timings(collection: Collection, folder: Path) -> None:
    from keel.testing import SpanCapture

    ingest(collection, [folder])
    tracer = SpanCapture()
    found = collection.search("rotate api key", top_k=2, tracer=tracer)
    (span,) = tracer.spans
    assert span.name == "retrieval docs"
    attrs = span.attributes
    assert attrs["keel.collection"] == "docs" and attrs["keel.retrieval.top_k"] == 2
    assert attrs["keel.retrieval.ids"] == [f.chunk_id for f in found]
    assert len(attrs["keel.retrieval.scores"]) == len(found)
    for stage in ("keyword_ms", "embed_ms", "vector_ms", "feedback_ms", "dedup_ms"):
        assert attrs[f"keel.retrieval.{stage}"] >= 0
    assert span.emitted is not None and span.emitted.parent is None and span.emitted.kind == "internal"
    from keel.tracing.tracer import CURRENT_RUN

    token = CURRENT_RUN.set("run-1234")  # inside a feature run, retrieval is the run's child span
    try:
        collection.search("rotate api key", top_k=2, tracer=tracer)
    finally:
        CURRENT_RUN.reset(token)
    nested = tracer.spans[-1].emitted
    assert nested is not None and nested.parent == "run-1234" and nested.root == "run-1234"


def test_metadata_filters(collection: Collection, folder: Path) -> None:
    from keel.rag.search import Filters

    ingest(collection, [folder])
    assert {
        f.doc_id for f in collection.search("key refund kafka", top_k=10, filters=Filters(doc_prefix="guide/"))
    } == {"guide/kafka.txt"}
    only_md = collection.search("key refund kafka", top_k=10, filters=Filters(kinds=frozenset({"md"})))
    assert {f.doc_id for f in only_md} == {"keys.md", "billing.md"}
    picked = collection.search("rotate", top_k=10, filters=Filters(doc_ids=frozenset({"billing.md"})))
    assert {f.doc_id for f in picked} <= {"billing.md"}
    with pytest.raises(UserError, match="unknown document kind"):
        Filters(kinds=frozenset({"docx"}))


def test_embeddings_from_an_openai_compatible_endpoint(tmp_path: Path, folder: Path) -> None:
    from keel.config.loader import settings_from_yaml
    from keel.config.yamlfile import parse_yaml
    from keel.errors import ConfigError, UpstreamUnavailable
    from keel.rag.embedder import GatewayEmbedder, make_embedder
    from keel.testing import Fault, FaultServer

    with FaultServer() as upstream:
        settings = settings_from_yaml(
            parse_yaml(
                "deployments:\n  emb: {provider: openai, model: text-embedding-3-small, "
                f"base_url: '{upstream.base_url}'}}\n"
                "retrieval: {embedder: emb}\n",
                "keel.yaml",
            )
        )
        embedder = make_embedder(settings, tmp_path / "home")
        assert isinstance(embedder, GatewayEmbedder) and embedder.dims == 16
        col = Collection.create(connect(tmp_path / "k.db"), "remote", embedder)
        report = ingest(col, [folder])
        assert report.chunks == 4 and upstream.requests[-1][1]["model"] == "text-embedding-3-small"
        assert col.search("rotate api key", top_k=1, mode="keyword")[0].doc_id == "keys.md"
        assert len(col.search("anything at all", top_k=2, mode="vector")) == 2
        upstream.inject(*[Fault.status_code(500, retry_after=0)] * 3)  # through the gateway: retried, then
        with pytest.raises(UpstreamUnavailable, match="injected 500"):  # its error class
            embedder.embed(["x"])
        embedder.close()
    with pytest.raises(ConfigError, match="neither a model alias nor a deployment"):
        settings_from_yaml(parse_yaml("retrieval: {embedder: ghost}\n", "keel.yaml"))


def test_a_collection_indexed_before_chunks_carried_titles_is_reindexed_once_and_says_so(
    collection: Collection, folder: Path
) -> None:
    from keel.rag.documents import content_hash

    ingest(collection, [folder])
    embedder = collection.embedder
    assert isinstance(embedder, CountingEmbedder)
    for name in DOCS:  # as an earlier Keel stored them: the hash of the text alone
        text = (folder / name).read_text()
        collection.conn.execute(
            "UPDATE rag_documents SET hash = ? WHERE collection = ? AND doc_id = ?",
            (content_hash(text), collection.name, name),
        )
    before = embedder.embedded
    again = ingest(collection, [folder])
    assert sorted(again.reindexed) == sorted(DOCS) and again.unchanged == []
    # their chunks' embedded text is what it was (each begins with its title already), so every vector
    # comes from the embedding cache: re-indexing re-embeds only text that changed
    assert embedder.embedded == before
    third = ingest(collection, [folder])
    assert sorted(third.unchanged) == sorted(DOCS) and third.reindexed == []
