"""Document-level search: chunk evidence per document in each retriever before fusion, each
document's best chunks together, and a reranked list put back together by document."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from keel.errors import UserError
from keel.rag import Collection, ingest
from keel.rag.embedder import LocalMiniLM
from keel.rag.found import Found
from keel.rag.grouping import Aggregate, best_chunks, merge_adjacent, regroup
from keel.rag.retrieval import Query, retrieve
from keel.rag.retrieve import Hit
from keel.store import connect


def test_a_document_scores_its_best_chunk_plus_a_damped_share_of_the_next() -> None:
    hits = [("a#0", 10.0), ("b#0", 9.0), ("b#1", 8.0), ("a#1", 1.0), ("b#2", 7.0), ("b#3", 7.0)]
    assert Aggregate(0.0, 2).documents(hits) == [("a", 10.0), ("b", 9.0)]  # damping 0: the best chunk
    assert Aggregate(0.5, 2).documents(hits) == [("b", 9.0 + 0.5 * (8 + 7)), ("a", 10.5)]  # depth 2: two more
    assert Aggregate(0.5, 1).documents([("a#0", 0.5), ("a#1", -0.2)]) == [("a", 0.5)]  # negative cosines add nothing


def test_best_chunks_keeps_each_documents_order_and_its_cap() -> None:
    docs = [Hit("b", 2.0), Hit("a", 1.0), Hit("c", 0.5)]
    chunks = [Hit(c, 1.0) for c in ("a#3", "b#1", "a#1", "b#0", "b#2")]
    picked = best_chunks(docs, chunks, 2)
    assert [(d.chunk_id, [c.chunk_id for c in cs]) for d, cs in picked] == [
        ("b", ["b#1", "b#0"]),
        ("a", ["a#3", "a#1"]),
    ]


def test_grouping_stays_linear_in_a_document_with_ten_thousand_chunks() -> None:
    hits = [(f"big#{i}", 1.0 / (i + 1)) for i in range(10_000)] + [("small#0", 0.9)]
    t0 = time.perf_counter()
    docs = Aggregate().documents(hits)
    picked = best_chunks([Hit(d, s) for d, s in docs], [Hit(c, s) for c, s in hits], 2)
    assert time.perf_counter() - t0 < 1.0  # a quadratic pass would take minutes
    assert [len(cs) for _, cs in picked] == [2, 1]


@pytest.fixture
def collection(tmp_path: Path, minilm: LocalMiniLM) -> Collection:
    docs = tmp_path / "docs"
    docs.mkdir()
    facts = [
        "To rotate an API key, create a second key on the Settings page before revoking the first.",
        "Old API keys keep working for 24 hours after rotation, so deploys never break.",
        "Each API key can be scoped to one project and carries a name you choose.",
        "Revoked keys answer 401 and are listed in the audit log with who revoked them.",
        "Keys are shown once when created; store them in your secret manager right away.",
        "An organisation may hold at most fifty active API keys at any time.",
    ]
    long = "\n\n".join(f"## Part {i}\n{fact}" for i, fact in enumerate(facts))
    (docs / "keys.md").write_text(f"# Keys\n\n{long}\n")
    (docs / "refunds.md").write_text("# Refunds\n\nRefunds take five business days and go back to the card.\n")
    (docs / "limits.md").write_text("# Rate limits\n\nThe API allows 100 requests a minute; keys share it.\n")
    col = Collection.create(connect(tmp_path / "k.db"), "docs", minilm)
    ingest(col, [docs])
    return col


async def test_document_search_returns_distinct_documents_each_with_its_best_chunks(collection: Collection) -> None:
    chunks = await retrieve(collection, Query("how do I rotate API keys", top_k=3))
    assert [f.doc_id for f in chunks] == ["keys.md"] * 3  # one page fills every slot
    found = await retrieve(collection, Query("how do I rotate API keys", top_k=3, group_by="document", per_document=2))
    docs = list(dict.fromkeys(f.doc_id for f in found))
    assert docs[0] == "keys.md" and len(docs) == 3 and [f.doc_id for f in found].count("keys.md") == 2
    assert [f.doc_rank for f in found] == sorted(f.doc_rank or 0 for f in found) and found[0].doc_rank == 1
    assert all(f.doc_score is not None for f in found) and found[0].doc_score == found[1].doc_score
    for bad, message in (
        (dict(group_by="page"), "group_by must be chunk or document"),
        (dict(per_document=0), "at least 1"),
    ):
        with pytest.raises(UserError, match=message):
            await retrieve(
                collection,
                Query("keys", group_by=bad.get("group_by", "document"), per_document=bad.get("per_document", 2)),
            )  # type: ignore[arg-type]


def test_a_reranked_list_is_put_back_together_by_document(collection: Collection) -> None:
    found = collection.search("rotate API keys refunds", top_k=3, group_by="document", per_document=2)
    shuffled = [found[-1], *found[:-1]]
    again = regroup(shuffled, 2)
    assert len({f.doc_id for f in again}) == 2 and again[0].doc_id == found[-1].doc_id and again[0].doc_rank == 1


def _chunk(doc: str, n: int, start: int, end: int, text: str, score: float = 1.0) -> Found:
    return Found(f"{doc}#{n}", doc, doc, doc, [doc], None, start, end, text, score, None, None)


def test_adjacent_and_overlapping_chunks_of_a_document_become_one_source_in_document_order() -> None:
    page = "Alpha one. Beta two. Gamma three. Delta four."
    a, b, c, d = (_chunk("p", i, page.index(w), page.index(w) + len(t), t) for i, (w, t) in enumerate(
        [("Alpha", "Alpha one."), ("Beta", "Beta two. Gamma"), ("Gamma", "Gamma three."), ("Delta", "Delta four.")]
    ))  # fmt: skip
    other = _chunk("q", 0, 0, 5, "Other")
    merged = merge_adjacent([c, other, b, a])  # the best first, as retrieval ranks them
    assert [m.doc_id for m in merged] == ["p", "q"]
    assert merged[0].text == "Alpha one.\n\nBeta two. Gamma three." and (merged[0].start, merged[0].end) == (0, 33)
    assert page[merged[0].start : merged[0].end].replace(" ", "") == merged[0].text.replace("\n\n", "").replace(" ", "")
    apart = merge_adjacent([a, d])  # not next to each other: two sources
    assert [x.text for x in apart] == ["Alpha one.", "Delta four."]
