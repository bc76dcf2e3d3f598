"""One conformance suite per index protocol (keyword, vector): every implementation — the embedded
BM25, exact and HNSW vectors, the Postgres ones, a third party's — inherits it and gives it ``make()``."""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.rag.index import KeywordIndex, VectorIndex

CORPUS = {
    "a": "Rotate an API key from the settings page",
    "b": "Invoices are emailed monthly; refunds take five days",
    "c": "Keys that leak must be revoked at once",
    "d": "The settings page lists every API key and its last use",
    "e": "Kafka consumers rebalance when a partition is added",
}


class KeywordIndexSuite:
    def make(self) -> KeywordIndex:
        raise NotImplementedError

    def filled(self) -> Any:
        index = self.make()
        index.add(list(CORPUS), list(CORPUS.values()))
        return index

    def test_ranks_by_relevance(self) -> None:
        hits = self.filled().search("api key settings", 3)
        assert [h[0] for h in hits][:2] in (["a", "d"], ["d", "a"])
        assert all(hits[i][1] >= hits[i + 1][1] for i in range(len(hits) - 1))

    def test_stemming_and_stopwords(self) -> None:
        assert self.filled().search("rotating keys", 1)[0][0] == "a"
        assert self.filled().search("the and of", 5) == []

    def test_unknown_terms_and_empty_index(self) -> None:
        assert self.filled().search("zeppelin", 5) == []
        assert self.make().search("anything", 5) == []

    def test_delete_and_re_add(self) -> None:
        index = self.filled()
        index.delete(["a", "missing"])
        assert "a" not in [h[0] for h in index.search("rotate api key", 5)]
        index.add(["a"], ["Rotate an API key from the settings page"])
        assert index.search("rotate", 1)[0][0] == "a"

    def test_replacing_an_id_keeps_one_copy(self) -> None:
        index = self.filled()
        index.add(["b"], ["Kafka partitions and consumers"])
        hits = [h[0] for h in index.search("kafka consumers partition", 5)]
        assert sorted(hits) == ["b", "e"] and "refunds" not in str(index.search("refunds", 5))

    def test_k_bounds_results(self) -> None:
        assert len(self.filled().search("key", 2)) == 2
        assert self.filled().search("key", 0) == []

    def test_unicode(self) -> None:
        index = self.make()
        index.add(["u"], ["Café naïve 漢字 résumé"])
        assert index.search("café", 1)[0][0] == "u"


class VectorIndexSuite:
    dims = 8

    def make(self) -> VectorIndex:
        raise NotImplementedError

    def unit(self, seed: int) -> np.ndarray:
        v = np.random.default_rng(seed).normal(size=self.dims).astype(np.float32)
        return v / np.linalg.norm(v)

    def test_nearest_first_with_cosine_scores(self) -> None:
        index = self.make()
        vectors = np.stack([self.unit(i) for i in range(20)])
        index.add([f"v{i}" for i in range(20)], vectors)
        hits = index.search(vectors[7], 5)
        assert hits[0][0] == "v7" and abs(hits[0][1] - 1.0) < 1e-4
        assert all(hits[i][1] >= hits[i + 1][1] for i in range(len(hits) - 1))

    def test_delete_and_replace(self) -> None:
        index = self.make()
        index.add(["x", "y"], np.stack([self.unit(1), self.unit(2)]))
        index.delete(["x"])
        assert [h[0] for h in index.search(self.unit(1), 5)] == ["y"]
        index.add(["y"], self.unit(1)[None, :])
        assert index.search(self.unit(1), 5)[0] == ("y", index.search(self.unit(1), 5)[0][1])
        assert len(index.search(self.unit(1), 5)) == 1

    def test_empty_and_wrong_shapes(self) -> None:
        index = self.make()
        assert index.search(self.unit(0), 3) == []
        try:
            index.add(["a"], np.zeros((1, self.dims + 1), dtype=np.float32))
        except ValueError:
            pass
        else:
            raise AssertionError("a vector of the wrong size must be refused")
