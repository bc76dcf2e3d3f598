"""One database seam for every repository: SQLite (embedded) or Postgres (shared by replicas).

Repositories write SQL once, with ``?`` placeholders and the subset both engines agree on
(``ON CONFLICT … DO UPDATE``, ``RETURNING``, ``CASE``, ``coalesce``); the few real differences
live here, each in one place (:meth:`Database.day`, :meth:`Database.concat`, placeholders,
numeric types, locks). Rows come back as plain dicts.

A ``Database`` holds one connection and a re-entrant lock: each statement, and each
``transaction()`` block as a whole, runs under it, so threads (the event loop and worker threads)
can share one safely. A transaction takes the write lock up front — ``BEGIN IMMEDIATE`` on
SQLite; on Postgres a repository serialises on what it names with an advisory lock
(:meth:`Database.lock`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from decimal import Decimal
from typing import Any, Literal, TypeVar

import anyio.to_thread
import orjson

from keel.errors import InvalidRequest
from keel.errors import StoreUnavailable as StoreUnavailable

Dialect = Literal["sqlite", "postgres"]
T = TypeVar("T")
_QMARK = re.compile(r"\?")


def encode_keyset(at: float, key: str) -> str:
    """A keyset cursor — the (time, id) of a page's last row — as an opaque, URL-safe string."""
    return base64.urlsafe_b64encode(orjson.dumps([at, key])).decode().rstrip("=")


def decode_keyset(cursor: str) -> tuple[float, str]:
    """The (time, id) a cursor from :func:`encode_keyset` carries; anything else is a 400."""
    try:
        at, key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(at), str(key)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidRequest("'cursor' is not a cursor this API returned", param="cursor") from None


class Where:
    """A WHERE clause built a condition at a time, its parameters kept beside it:

        where = Where("operation <> 'feature'").eq("tenant", tenant).add("ts >= ?", since)
        db.all(f"SELECT … FROM traces WHERE {where}", where.args)

    ``eq`` and ``add`` skip a condition whose value is None (an unset filter)."""

    def __init__(self, *fixed: str) -> None:
        self.clauses = list(fixed)
        self.args: list[Any] = []

    def add(self, clause: str, *values: Any) -> Where:
        if not values or values[0] is not None:
            self.clauses.append(clause)
            self.args.extend(values)
        return self

    def eq(self, column: str, value: Any) -> Where:
        return self.add(f"{column} = ?", value)

    def __str__(self) -> str:
        return " AND ".join(self.clauses) or "1=1"


def _pg_value(value: Any) -> Any:
    if isinstance(value, Decimal):  # sum(bigint) and avg() come back as numeric
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def redact_url(url: str) -> str:
    """A connection URL fit for a log line or an error: the password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class Database:
    """A connection to SQLite or Postgres with the dialect differences in one place."""

    RECONNECT_EVERY_S = 0.5  # while the server is away, try again at most this often

    def __init__(
        self, conn: Any, dialect: Dialect, *, where: str = "", reconnect: Callable[[], Any] | None = None
    ) -> None:
        self.conn = conn
        self.dialect: Dialect = dialect
        self.where = where  # for messages: a path, or the URL without its password
        self._reconnect = reconnect  # a new connection, after the server went away
        self._broken = False
        self._tried = 0.0
        self._lock = threading.RLock()
        self._depth = 0
        self._sql: dict[str, str] = {}

    # -- dialect -----------------------------------------------------------------------------------
    @property
    def postgres(self) -> bool:
        return self.dialect == "postgres"

    def day(self, column: str) -> str:
        """The UTC calendar day (YYYY-MM-DD) of a UNIX-seconds column."""
        if self.postgres:
            return f"to_char(to_timestamp({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        return f"date({column}, 'unixepoch')"

    def concat(self, expression: str) -> str:
        """An aggregate joining a text expression's values with commas (order unspecified)."""
        return f"string_agg({expression}, ',')" if self.postgres else f"group_concat({expression}, ',')"

    def _translate(self, sql: str) -> str:
        if not self.postgres:
            return sql
        done = self._sql.get(sql)
        if done is None:
            done = _QMARK.sub("%s", sql.replace("%", "%%"))
            self._sql[sql] = done
        return done

    # -- statements --------------------------------------------------------------------------------
    def _execute(self, sql: str, params: Sequence[Any]) -> Any:
        return self._guarded(lambda: self.conn.execute(self._translate(sql), tuple(params)))

    def _guarded(self, work: Callable[[], T]) -> T:
        """Run one statement (or batch) on the connection. A connection the server dropped fails this
        call with ``StoreUnavailable`` (it may or may not have run) and is replaced on the next one."""
        if self._broken:
            self._revive()
        try:
            return work()
        except Exception as exc:
            if self._is_connection_error(exc):
                self._broken = True
                raise self._unavailable(exc) from exc
            raise

    def _revive(self) -> None:
        """Replace a connection the server dropped (a restart, a failover) — outside transactions
        only, and at most every RECONNECT_EVERY_S while it stays away."""
        if self._depth or self._reconnect is None or time.monotonic() - self._tried < self.RECONNECT_EVERY_S:
            raise StoreUnavailable(f"the store at {self.where} is unavailable; retry shortly")
        self._tried = time.monotonic()
        try:
            fresh = self._reconnect()
        except Exception as exc:
            raise self._unavailable(exc) from exc
        with suppress(Exception):  # the old connection is already dead
            self.conn.close()
        self.conn, self._broken = fresh, False

    def _is_connection_error(self, exc: Exception) -> bool:
        if not self.postgres:
            return False
        import psycopg

        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreUnavailable(f"the store at {self.where} is unavailable ({redact_url(first)}); retry shortly")

    def _rows(self, cursor: Any) -> list[dict[str, Any]]:
        if cursor.description is None:
            return []
        if self.postgres:
            names = [d.name for d in cursor.description]
            return [{n: _pg_value(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]
        return [dict(row) for row in cursor.fetchall()]

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self._rows(self._execute(sql, params))

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else next(iter(row.values()))

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute a write; returns the number of rows it touched."""
        with self._lock:
            return int(self._execute(sql, params).rowcount)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        values = [tuple(r) for r in rows]

        def batch() -> None:
            if self.postgres:
                with self.conn.cursor() as cur:
                    cur.executemany(self._translate(sql), values)
            else:
                self.conn.executemany(sql, values)

        with self._lock:
            self._guarded(batch)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """All or nothing, holding the write lock; nested blocks join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._begin()
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                self._end("ROLLBACK")
                raise
            self._depth = 0
            self._end("COMMIT")

    def _begin(self) -> None:
        if self.postgres:
            self._execute("BEGIN", ())
            return
        deadline = time.monotonic() + 30
        while True:  # BEGIN IMMEDIATE can meet "locked" at once on a brand-new file
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _end(self, verb: str) -> None:
        try:
            self.conn.execute(verb)
        except Exception as exc:
            if self._is_connection_error(exc):
                if verb == "ROLLBACK":
                    return  # the connection is gone, and the transaction with it
                raise self._unavailable(exc) from exc
            raise

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking repository call from async code: inline on SQLite (tens of microseconds,
        cheaper than a thread hop), in a worker thread on Postgres (a network round trip)."""
        if self.postgres:
            return await anyio.to_thread.run_sync(fn, *args)
        return fn(*args)

    def lock(self, name: str) -> None:
        """Serialise on ``name`` until the transaction ends (Postgres advisory lock; on SQLite the
        transaction already holds the database's one write lock)."""
        if self.postgres:
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            self._execute("SELECT pg_advisory_xact_lock(?)", (key,))

    def close(self) -> None:
        with self._lock:
            self.conn.close()
