from __future__ import annotations

import bm25s
import numpy as np
import Stemmer

from keel.rag.bm25 import BM25Index
from keel.rag.hnsw import AdaptiveVectorIndex, HNSWVectorIndex
from keel.rag.vectors import ExactVectorIndex
from keel.testing.index_conformance import CORPUS, KeywordIndexSuite, VectorIndexSuite


class TestBM25(KeywordIndexSuite):
    def make(self) -> BM25Index:
        return BM25Index()


class TestExactVectors(VectorIndexSuite):
    def make(self) -> ExactVectorIndex:
        return ExactVectorIndex(self.dims)


def test_scores_match_the_lucene_reference_exactly() -> None:
    stemmer = Stemmer.Stemmer("english")
    texts = list(CORPUS.values()) * 3 + ["api api api key", "settings"]
    ids = [f"d{i}" for i in range(len(texts))]
    ref = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    ref.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    ours = BM25Index()
    ours.add(ids, texts)
    for query in ("api key", "settings page refunds", "kafka"):
        tokens = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False)
        docs, scores = ref.retrieve(tokens, k=len(texts), show_progress=False)
        expected = {ids[d]: float(s) for d, s in zip(docs[0], scores[0], strict=True) if s > 0}
        got = dict(ours.search(query, len(texts)))
        assert got.keys() == expected.keys()
        assert all(abs(got[k] - expected[k]) < 1e-4 for k in got)


def test_statistics_stay_exact_after_deletes() -> None:
    texts = {f"d{i}": f"alpha beta {'gamma ' * i}" for i in range(6)}
    grown = BM25Index()
    grown.add(list(texts), list(texts.values()))
    grown.add(["x", "y"], ["alpha noise", "beta noise"])
    grown.delete(["x", "y"])
    fresh = BM25Index()
    fresh.add(list(texts), list(texts.values()))
    assert np.allclose([s for _, s in grown.search("gamma alpha", 6)], [s for _, s in fresh.search("gamma alpha", 6)])


class TestHNSW(VectorIndexSuite):
    def make(self) -> HNSWVectorIndex:
        return HNSWVectorIndex(self.dims)


class TestAdaptive(VectorIndexSuite):
    def make(self) -> AdaptiveVectorIndex:
        return AdaptiveVectorIndex(self.dims, threshold=5)  # crosses to HNSW inside the suite's 20 vectors


def test_hnsw_recall_against_exact_search() -> None:
    """Clustered 384-d vectors, like real sentence embeddings (uniform random vectors are ANN's
    pathological case: every distance is nearly equal)."""
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(200, 384))
    vectors = (centers[rng.integers(0, 200, 20_000)] + 0.6 * rng.normal(size=(20_000, 384))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"v{i}" for i in range(len(vectors))]
    exact, approx = ExactVectorIndex(384), HNSWVectorIndex(384)
    exact.add(ids, vectors)
    approx.add(ids, vectors)
    queries = (centers[rng.integers(0, 200, 100)] + 0.6 * rng.normal(size=(100, 384))).astype(np.float32)
    recall = np.mean(
        [len({i for i, _ in exact.search(q, 10)} & {i for i, _ in approx.search(q, 10)}) / 10 for q in queries]
    )
    assert recall >= 0.95, recall


def test_adaptive_switches_above_the_threshold_and_keeps_everything() -> None:
    index = AdaptiveVectorIndex(8, threshold=10)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index.add([f"a{i}" for i in range(8)], vectors[:8])
    assert index.kind == "exact"
    index.delete(["a0"])
    index.add([f"b{i}" for i in range(22)], vectors[8:])
    assert index.kind == "hnsw" and len(index) == 29
    assert index.search(vectors[3], 1)[0][0] == "a3" and index.vector("a0") is None
    assert np.allclose(index.vector("b0"), vectors[8], atol=1e-2)  # stored as f16
