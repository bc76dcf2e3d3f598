"""Keyword ranking on Postgres: Keel's SQL BM25 vs Postgres full-text ``ts_rank`` / ``ts_rank_cd``,
side by side on Cranfield, on a real PostgreSQL 16 (PyPI ``pgserver``, Unix socket).

    python bench/retrieval/postgres.py

ts_rank queries OR the query's words (``to_tsquery('english', 'w1 | w2 | …')``): AND semantics
(``plainto_tsquery``) returns nothing for most of Cranfield's long queries, which would be unfair.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pgserver
import psycopg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cranfield import ROOT, load, metrics

from keel.rag.bm25 import BM25Index
from keel.rag.pg import PgKeywordIndex

console = Console(width=150)


def main() -> None:
    ids, texts, queries, qrels = load(ROOT.parent / "shared" / "data" / "cranfield")
    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="keel-pg-")), cleanup_mode="delete")
    rows = {}
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        keel = PgKeywordIndex(conn, "cranfield")
        keel.add(ids, texts)
        conn.execute("CREATE TABLE fts (id text PRIMARY KEY, body tsvector)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO fts VALUES (%s, to_tsvector('english', %s))", list(zip(ids, texts, strict=True))
            )
        conn.execute("CREATE INDEX fts_gin ON fts USING gin (body)")
        conn.execute("ANALYZE")
        memory = BM25Index()
        memory.add(ids, texts)

        def run(name: str, search) -> None:  # type: ignore[no-untyped-def]
            ranked, times = [], []
            for q in queries:
                t = time.perf_counter()
                ranked.append(search(q))
                times.append((time.perf_counter() - t) * 1000)
            rows[name] = (metrics(ranked, qrels), statistics.median(times))

        run("Keel BM25, embedded", lambda q: [d for d, _ in memory.search(q, 100)])
        run("Keel BM25 in Postgres (SQL)", lambda q: [d for d, _ in keel.search(q, 100)])
        for fn in ("ts_rank", "ts_rank_cd"):

            def search(q: str, fn: str = fn) -> list[str]:
                words = " | ".join(sorted(set(re.findall(r"[a-z0-9]{2,}", q.lower())))) or "none"
                sql = (
                    f"SELECT id FROM fts, to_tsquery('english', %s) query WHERE body @@ query "
                    f"ORDER BY {fn}(body, query) DESC, id LIMIT 100"
                )
                return [r[0] for r in conn.execute(sql, (words,)).fetchall()]

            run(f"Postgres {fn} (OR query)", search)
    table = Table(title="keyword ranking on Cranfield-1400 (doc-level), PostgreSQL 16.2")
    for col in ("ranking", "nDCG@10", "recall@100", "MRR@10", "p50 ms/query"):
        table.add_column(col, justify="right")
    for name, (m, ms) in rows.items():
        table.add_row(name, f"{m['nDCG@10']:.3f}", f"{m['recall@100']:.3f}", f"{m['MRR@10']:.3f}", f"{ms:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
