"""The Postgres indexes against a real PostgreSQL 16 + pgvector started on a Unix socket (PyPI
``pgserver``), through the same conformance suites as the embedded indexes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from keel.rag.bm25 import BM25Index
from keel.testing.index_conformance import CORPUS, KeywordIndexSuite, VectorIndexSuite


class PgTable:
    """Each index a suite makes gets a fresh table name on the session's PostgreSQL."""

    @pytest.fixture(autouse=True)
    def _conn(self, conn: Any) -> None:
        self.conn = conn
        self.n = 0

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


class TestPgKeyword(PgTable, KeywordIndexSuite):
    def make(self) -> Any:
        from keel.rag.pg import PgKeywordIndex

        return PgKeywordIndex(self.conn, self.fresh("c"))


class TestPgVector(PgTable, VectorIndexSuite):
    def make(self) -> Any:
        from keel.rag.pg import PgVectorIndex

        return PgVectorIndex(self.conn, self.fresh("v"), self.dims)


def test_sql_bm25_equals_the_embedded_bm25(conn: Any) -> None:
    from keel.rag.pg import PgKeywordIndex

    texts = list(CORPUS.values()) * 2 + ["api api key", "settings settings page"]
    ids = [f"d{i}" for i in range(len(texts))]
    pg, mem = PgKeywordIndex(conn, "same"), BM25Index()
    pg.add(ids, texts)
    mem.add(ids, texts)
    pg.delete(["d1"])
    mem.delete(["d1"])
    for query in ("api key settings", "refunds invoices", "kafka partition"):
        a, b = dict(pg.search(query, 20)), dict(mem.search(query, 20))
        assert a.keys() == b.keys()
        assert all(abs(a[k] - b[k]) < 1e-4 for k in a)


def test_collections_are_isolated(conn: Any) -> None:
    from keel.rag.pg import PgKeywordIndex, PgVectorIndex

    one, two = PgKeywordIndex(conn, "one"), PgKeywordIndex(conn, "two")
    one.add(["a"], ["rotate keys"])
    two.add(["b"], ["rotate keys"])
    assert [h[0] for h in one.search("rotate", 5)] == ["a"]
    v1, v2 = PgVectorIndex(conn, "one", 4), PgVectorIndex(conn, "two", 4)
    v1.add(["a"], np.eye(4, dtype=np.float32)[:1])
    assert v2.search(np.eye(4, dtype=np.float32)[0], 5) == []


def test_batched_idfs_equal_single_lookups(conn: Any) -> None:
    from keel.rag.pg import PgKeywordIndex

    pg, mem = PgKeywordIndex(conn, "idf"), BM25Index()
    pg.add(list(CORPUS), list(CORPUS.values()))
    mem.add(list(CORPUS), list(CORPUS.values()))
    wanted = {"key", "api", "kafka", "absent"}
    batch = pg.idfs(wanted)
    assert batch == pytest.approx({t: pg.idf(t) for t in wanted}) and batch == pytest.approx(mem.idfs(wanted))
    assert batch["absent"] == 0.0
