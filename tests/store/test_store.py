from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from keel.errors import UserError
from keel.store import BatchWriter, Store, TraceRecord, connect
from keel.store.engines import open_postgres, open_sqlite
from keel.store.sqlite import MIGRATIONS, migrate
from keel.testing.store_conformance import in_threads


def test_migrations_are_idempotent_and_concurrent_safe(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            connect(path).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    conn = connect(path)
    assert migrate(conn) == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_old_embedded_database_is_migrated_and_loses_nothing(tmp_path: Path) -> None:
    """A database written by the version before tenants everywhere (schema 9) opens in this one."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, script in enumerate(MIGRATIONS[:9], start=1):
        for statement in script.split(";"):
            if statement.strip():
                old.execute(statement)
        old.execute("INSERT INTO schema_version VALUES (?)", (number,))
    old.execute("INSERT INTO api_keys VALUES ('k1', 'acme', 'ci', 'keel-abc', 'h', 1.0, NULL)")
    old.execute("INSERT INTO traces(id, ts, operation, status) VALUES ('t-no-tenant', 1, 'chat', 'ok')")
    old.execute("INSERT INTO traces(id, ts, operation, status, tenant) VALUES ('t-acme', 2, 'chat', 'ok', 'acme')")
    old.execute("INSERT INTO feedback(trace_id, name, value, at) VALUES ('t-acme', 'helpful', 1, 3)")
    old.execute("INSERT INTO prompt_versions VALUES ('p', 1, 'h1', 'one', NULL, NULL, 1)")
    old.execute("INSERT INTO prompt_versions VALUES ('p', 2, 'h2', 'two', NULL, NULL, 2)")
    old.execute("INSERT INTO prompt_labels VALUES ('p', 'production', 2)")
    old.execute("INSERT INTO prompt_label_moves VALUES ('p', 'production', NULL, 1, 'first version', 1)")
    old.execute("INSERT INTO prompt_label_moves VALUES ('p', 'production', 1, 2, 'set by hand', 2)")
    old.execute("INSERT INTO experiments VALUES ('x', 'support', '[]', 'running', 1, NULL, NULL, NULL)")
    old.execute("INSERT INTO rag_collections(name, created, embedder, dims, chunk_tokens, overlap) "
                "VALUES ('docs', 1, 'e', 3, 128, 0)")  # fmt: skip
    old.close()
    with Store.at(path) as store:
        assert store.keys.find()[0].role == "member" and [t["name"] for t in store.keys.tenants()] == ["acme"]
        assert {r.id: r.tenant for r in store.traces.find(tenant=None)} == {"t-no-tenant": "default", "t-acme": "acme"}
        rolled = store.traces.dashboard(tenant=None, since=0, by="tenant", bucket_s=0)  # backfilled on the way
        assert [(r["value"], r["calls"]) for r in rolled] == [("acme", 1), ("default", 1)]
        assert [f.name for f in store.feedback.for_trace("t-acme", tenant="acme")] == ["helpful"]
        moves = store.prompts.moves("p", "production")
        assert [(m["from_version"], m["to_version"]) for m in moves] == [(None, 1), (1, 2)]
        assert store.experiments.running("default", "support") is not None
        row = store.db.one("SELECT tenant, label FROM rag_collections WHERE name = 'docs'")
        assert row == {"tenant": "default", "label": "docs"}


def rec(i: int, **kw: object) -> TraceRecord:
    base = dict(
        id=f"trace{i:04d}aaaa",
        ts=time.time() - 100 + i,
        operation="chat",
        alias="fast",
        model="gpt-4o-mini",
        tenant="acme" if i % 2 else "globex",
        input_tokens=10,
        output_tokens=5,
        cost_usd=0.001,
    )
    base.update(kw)
    return TraceRecord(**base)  # type: ignore[arg-type]


def test_writer_batches_flushes_and_queries(tmp_path: Path) -> None:
    writer = BatchWriter(lambda: open_sqlite(tmp_path / "k.db"), batch_size=7, flush_interval=0.01).start()
    for i in range(30):
        assert writer.submit(rec(i, attempts=[{"deployment": "d"}], request=["ü"]))
    assert writer.flush() and writer.written == 30 and writer.dropped == 0
    with Store.at(tmp_path / "k.db") as store:
        newest = store.traces.find(tenant=None, limit=3)
        assert [r.id for r in newest] == ["trace0029aaaa", "trace0028aaaa", "trace0027aaaa"]
        assert newest[0].attempts == [{"deployment": "d"}] and newest[0].request == ["ü"]
        assert store.traces.get("trace0005", tenant=None) is not None
        with pytest.raises(UserError, match="more than one"):
            store.traces.get("trace00", tenant=None)
        rows = store.traces.cost_summary(["tenant"])
        assert {r["tenant"]: r["calls"] for r in rows} == {"acme": 15, "globex": 15}
        assert sum(r["cost_usd"] for r in rows) == pytest.approx(0.03)
        with pytest.raises(UserError, match="group by"):
            store.traces.cost_summary(["colour"])
    writer.close()


def test_writer_drops_and_counts_when_full(tmp_path: Path) -> None:
    writer = BatchWriter(lambda: open_sqlite(tmp_path / "k.db"), queue_size=3)  # not started: nothing drains
    accepted = [writer.submit(rec(i)) for i in range(10)]
    assert accepted.count(True) == 3 and writer.dropped == 7


def test_write_failures_are_counted_not_raised(tmp_path: Path) -> None:
    writer = BatchWriter(lambda: open_sqlite(tmp_path / "k.db"), flush_interval=0.01).start()
    writer.submit(rec(0, request={"not json": object()}))  # cannot be serialised: that row alone is lost
    writer.submit(rec(1))
    assert writer.flush() and writer.failed == 1 and writer.written == 1
    writer.close()


def test_readers_are_not_blocked_by_the_writer(tmp_path: Path) -> None:
    writer = BatchWriter(lambda: open_sqlite(tmp_path / "k.db"), flush_interval=0.01).start()
    reader = sqlite3.connect(tmp_path / "k.db")
    for i in range(200):
        writer.submit(rec(i, id=f"r{i}"))
        reader.execute("SELECT count(*) FROM traces").fetchone()
    assert writer.flush()
    assert reader.execute("SELECT count(*) FROM traces").fetchone()[0] == 200
    writer.close()


def test_trace_rows_wait_out_a_postgres_outage(pg_url: str) -> None:
    """The store goes away mid-traffic: rows stay buffered (bounded), are written when it returns,
    and what overflowed is counted — never silently lost."""
    down = threading.Event()

    def opener() -> Any:
        if down.is_set():
            raise RuntimeError("connection refused")
        return open_postgres(pg_url)

    writer = BatchWriter(opener, queue_size=50, batch_size=10, flush_interval=0.01, retry_max_s=0.05).start()
    for i in range(5):
        writer.submit(rec(i))
    assert writer.flush()
    down.set()
    with Store(open_postgres(pg_url)) as admin:  # cut the writer's connection, as a restart would
        admin.db.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")  # fmt: skip
        for i in range(5, 65):
            writer.submit(rec(i))
        time.sleep(0.3)
        # bounded: the buffer, plus the batch that was in flight when the store went away
        assert writer.outages > 0 and 50 <= writer.pending <= 60 and writer.dropped == 65 - 5 - writer.pending
        kept = writer.pending
        down.clear()
        deadline = time.time() + 10
        while writer.pending and time.time() < deadline:
            time.sleep(0.05)
        assert writer.flush() and writer.written == 5 + kept and writer.failed == 0
        assert admin.traces.count() == 5 + kept  # every row not counted as dropped was written
    writer.close()


def test_retention_deletes_old_traces_in_the_writer(tmp_path: Path) -> None:
    writer = BatchWriter(lambda: open_sqlite(tmp_path / "k.db"), flush_interval=0.01, retention_days=30).start()
    writer.submit(rec(1, ts=time.time() - 31 * 86400))  # older than the retention window
    writer.submit(rec(2))
    assert writer.flush()
    deadline = time.time() + 5
    while writer.purged == 0 and time.time() < deadline:
        writer._purged_at = 0.0  # the next round purges again (normally every purge_every_s)
        writer.flush()
    with Store.at(tmp_path / "k.db") as store:
        assert [r.id for r in store.traces.find(tenant=None)] == ["trace0002aaaa"] and writer.purged == 1
    writer.close()


def test_replicas_migrating_one_postgres_at_once_apply_each_step_once(pg_url: str) -> None:
    from keel.store.migrations import POSTGRES, schema_version

    opened: list[Any] = []
    in_threads(4, lambda _: opened.append(open_postgres(pg_url)))
    assert len(opened) == 4
    db = opened[0]
    assert schema_version(db) == len(POSTGRES)
    assert db.scalar("SELECT count(*) FROM keel_schema") == len(POSTGRES)  # each step recorded once
    for each in opened:
        each.close()
