"""Trace volume on the store: write throughput of the batched writer (one writer thread), and a
30-day dashboard query (calls, errors, cost, latency p50/p95 per feature per hour) over 1M rows —
SQLite and Postgres side by side in one run.

    .venv/bin/python bench/store/traces.py               # ~3 min
    .venv/bin/python bench/store/traces.py --rows 200000 # quicker

Targets (issue 12): ≥ 5,000 rows/s written on Postgres; ≤ 300 ms for the 30-day query at 1M rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from keel.store import BatchWriter, Store, TraceRecord
from keel.store.db import Database
from keel.store.engines import open_postgres, open_sqlite
from keel.testing.postgres_server import PostgresServer

FEATURES = ["support", "classify", "summarise", "extract", "search", "translate"]
console = Console(width=140)


def record(i: int, now: float, span_s: float, n: int | None = None) -> TraceRecord:
    """Row ``i``: scattered over the last ``span_s`` seconds, or — given ``n`` — the i-th of n in time
    order, as a live gateway writes them."""
    ts = now - span_s + i * span_s / n if n else now - (i * 7919 % 1_000_003) / 1_000_003 * span_s
    return TraceRecord(
        id=uuid.uuid4().hex,
        ts=ts,
        operation="chat",
        tenant="acme" if i % 10 else "globex",
        user=f"u{i % 500}",
        feature=FEATURES[i % len(FEATURES)],
        alias="fast",
        deployment="d",
        provider="openai",
        model="gpt-4o-mini",
        status="error" if i % 97 == 0 else "ok",
        input_tokens=120 + i % 300,
        output_tokens=40 + i % 90,
        usage_source="provider",
        cost_usd=0.00002 * (1 + i % 7),
        latency_ms=200 + (i * 31 % 1700),
        attempts=[{"deployment": "d", "provider": "openai", "model": "gpt-4o-mini", "started": now}],
        request={"messages": [{"role": "user", "content": "How long do refunds take? " * 3}]},
        response="Refunds take five business days [1].",
    )


def write_throughput(opener: object, n: int, *, ordered: bool) -> float:
    writer = BatchWriter(opener, queue_size=n + 1, batch_size=512, flush_interval=0.05)  # type: ignore[arg-type]
    rows = [record(i, time.time(), 86_400, n if ordered else None) for i in range(n)]
    writer.start()
    started = time.perf_counter()
    for rec in rows:
        writer.submit(rec)
    assert writer.flush(600)
    took = time.perf_counter() - started
    writer.close()
    assert writer.written == n and writer.dropped == 0 and writer.failed == 0
    return n / took


def fill(db: Database, n: int, label: str) -> None:
    """n rows spread over 30 days, in transactions of 5,000 (loading is not what is measured)."""
    store = Store(db)
    now = time.time()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"loading {n:,} rows into {label}", total=n)
        for start in range(0, n, 5000):
            batch = [record(i, now, 30 * 86_400) for i in range(start, min(n, start + 5000))]
            with db.transaction():
                store.traces.write(batch)
            bar.advance(task, len(batch))
    if db.postgres:
        db.run("VACUUM ANALYZE traces")
    else:
        db.run("ANALYZE")


RAW = {  # the same answer by scanning every trace: what the rollups save
    "postgres": "SELECT (floor(ts / 3600) * 3600)::bigint AS bucket, feature, count(*), "
    "sum(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END), sum(coalesce(cost_usd, 0)), "
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) "
    "FROM traces WHERE ts >= ? AND operation <> 'feature' AND tenant = ? GROUP BY 1, 2",
    "sqlite": "SELECT CAST(ts / 3600 AS INTEGER) * 3600 AS bucket, feature, count(*), "
    "sum(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END), sum(coalesce(cost_usd, 0)), avg(latency_ms) "
    "FROM traces WHERE ts >= ? AND operation <> 'feature' AND tenant = ? GROUP BY 1, 2",
}


def raw_ms(db: Database, repeats: int = 3) -> float:
    since = time.time() - 30 * 86_400
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        db.all(RAW[db.dialect], (since, "acme"))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def query_ms(db: Database, repeats: int = 5) -> tuple[float, int]:
    store = Store(db)
    since = time.time() - 30 * 86_400
    times, rows = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        rows = len(store.traces.dashboard(tenant="acme", since=since))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the 30-day query")
    parser.add_argument("--writes", type=int, default=50_000, help="rows for the write-throughput run")
    args = parser.parse_args()
    table = Table(
        "backend", "write rows/s in time order", "scattered over 24 h", f"30-day query at {args.rows:,} rows",
        "groups", "same query scanning raw traces", "target",
        title="trace volume on the store (one writer; medians of 5 queries; raw scan: medians of 3)",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as pg:
        writes: dict[str, list[float]] = {"sqlite": [], "postgres": []}
        for ordered in (True, False):  # live traffic arrives in time order; a backfill need not
            path, url = Path(tmp) / f"w{ordered}.db", pg.database()
            writes["sqlite"].append(write_throughput(lambda p=path: open_sqlite(p), args.writes, ordered=ordered))
            writes["postgres"].append(write_throughput(lambda u=url: open_postgres(u), args.writes, ordered=ordered))
        sqlite_w, pg_w = writes["sqlite"], writes["postgres"]
        results = {}
        for label, db in (("sqlite", open_sqlite(Path(tmp) / "q.db")), ("postgres", open_postgres(pg.database()))):
            fill(db, args.rows, label)
            results[label] = (*query_ms(db), raw_ms(db))
            db.close()
        sq, pq = results["sqlite"], results["postgres"]
        table.add_row("sqlite (embedded)", f"{sqlite_w[0]:,.0f}", f"{sqlite_w[1]:,.0f}", f"{sq[0]:,.0f} ms",
                      str(sq[1]), f"{sq[2]:,.0f} ms (no percentiles)", "—")  # fmt: skip
        table.add_row("postgres 16", f"{pg_w[0]:,.0f}", f"{pg_w[1]:,.0f}", f"{pq[0]:,.0f} ms", str(pq[1]),
                      f"{pq[2]:,.0f} ms", "≥ 5,000 rows/s · ≤ 300 ms")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
