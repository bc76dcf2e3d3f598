"""The shipped demo golden set stays true to the handbook it tests."""

from __future__ import annotations

from pathlib import Path

from keel.cli.demo import PROJECT
from keel.evals.suite import load_suite
from keel.features.spec import load_feature
from keel.rag import Collection, ingest
from keel.rag.embedder import LocalMiniLM
from keel.store import connect, db_path


def test_the_demo_suite_parses_and_points_at_real_pages(home: Path) -> None:
    suite = load_suite(PROJECT / "evals" / "support_answer.yaml")
    assert load_feature(PROJECT, suite.spec.feature).retrieval is not None
    assert len(suite.spec.cases) >= 30
    for case in suite.spec.cases:
        for doc in case.expected_sources:
            assert (PROJECT / "handbook" / doc).is_file(), f"{case.id}: {doc} is not a handbook page"


def test_retrieval_finds_the_answering_page_for_the_demo_questions(home: Path) -> None:
    suite = load_suite(PROJECT / "evals" / "support_answer.yaml")
    collection = Collection.create(connect(db_path(home)), "handbook", LocalMiniLM())
    ingest(collection, [PROJECT / "handbook"])
    top_k = load_feature(PROJECT, "support_answer").retrieval.top_k  # type: ignore[union-attr]
    hits = []
    for case in suite.spec.cases:
        found = {f.doc_id for f in collection.search(case.inputs["question"], top_k=top_k)}
        hits.append(bool(found & set(case.expected_sources)))
    assert sum(hits) / len(hits) >= 0.9, [c.id for c, hit in zip(suite.spec.cases, hits, strict=True) if not hit]
