from __future__ import annotations

import bm25s
import numpy as np
import Stemmer

from keel.rag.bm25 import BM25Index
from keel.rag.vectors import ExactVectorIndex
from tests.rag.conformance import CORPUS, KeywordIndexSuite, VectorIndexSuite


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
