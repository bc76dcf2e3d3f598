from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from keel.errors import UserError
from keel.store import BatchWriter, TraceRecord, connect
from keel.store.keys import create_key, list_keys, revoke_key, tenant_for
from keel.store.sqlite import MIGRATIONS, migrate
from keel.store.traces import INSERT_SQL, cost_summary, get_trace, list_traces, record_params


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


def test_keys_are_stored_only_as_hashes(tmp_path: Path) -> None:
    conn = connect(tmp_path / "k.db")
    key, info = create_key(conn, "acme", "ci")
    dump = "\n".join(conn.iterdump())
    assert key not in dump and info.prefix in dump
    assert tenant_for(conn, key) == "acme" and tenant_for(conn, key + "x") is None
    assert revoke_key(conn, info.prefix) and not revoke_key(conn, info.id)
    assert tenant_for(conn, key) is None and list_keys(conn)[0].revoked is not None
    for bad in ("", "   ", "x" * 200, "tab\there"):
        with pytest.raises(UserError):
            create_key(conn, bad)


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
    writer = BatchWriter(tmp_path / "k.db", batch_size=7, flush_interval=0.01).start()
    for i in range(30):
        assert writer.submit(INSERT_SQL, record_params(rec(i, attempts=[{"deployment": "d"}], request=["ü"])))
    assert writer.flush() and writer.written == 30 and writer.dropped == 0
    conn = connect(tmp_path / "k.db")
    newest = list_traces(conn, limit=3)
    assert [r.id for r in newest] == ["trace0029aaaa", "trace0028aaaa", "trace0027aaaa"]
    assert newest[0].attempts == [{"deployment": "d"}] and newest[0].request == ["ü"]
    assert get_trace(conn, "trace0005") is not None
    with pytest.raises(UserError, match="more than one"):
        get_trace(conn, "trace00")
    rows = cost_summary(conn, ["tenant"])
    assert {r["tenant"]: r["calls"] for r in rows} == {"acme": 15, "globex": 15}
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(0.03)
    with pytest.raises(UserError, match="group by"):
        cost_summary(conn, ["colour"])
    writer.close()


def test_writer_drops_and_counts_when_full(tmp_path: Path) -> None:
    writer = BatchWriter(tmp_path / "k.db", queue_size=3)  # not started: nothing drains
    accepted = [writer.submit(INSERT_SQL, record_params(rec(i))) for i in range(10)]
    assert accepted.count(True) == 3 and writer.dropped == 7


def test_write_failures_are_counted_not_raised(tmp_path: Path) -> None:
    writer = BatchWriter(tmp_path / "k.db", flush_interval=0.01).start()
    writer.submit("INSERT INTO no_such_table VALUES (?)", (1,))
    assert writer.flush() and writer.failed == 1
    writer.submit(INSERT_SQL, record_params(rec(1)))
    assert writer.flush() and writer.written == 1
    writer.close()


def test_readers_are_not_blocked_by_the_writer(tmp_path: Path) -> None:
    writer = BatchWriter(tmp_path / "k.db", flush_interval=0.01).start()
    reader = sqlite3.connect(tmp_path / "k.db")
    for i in range(200):
        writer.submit(INSERT_SQL, record_params(rec(i, id=f"r{i}")))
        reader.execute("SELECT count(*) FROM traces").fetchone()
    assert writer.flush()
    assert reader.execute("SELECT count(*) FROM traces").fetchone()[0] == 200
    writer.close()
