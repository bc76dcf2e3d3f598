"""SQLite connections and migrations. WAL mode: one writer thread, many readers."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from keel.store.db import Database
from keel.store.rollups import backfill
from keel.store.sqlite_migrations import BACKFILL, MIGRATIONS

__all__ = ["BACKFILL", "MIGRATIONS", "connect", "db_path", "migrate"]


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the database, creating and migrating it if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.row_factory = sqlite3.Row
    if not readonly:
        migrate(conn)
    return conn


def _enable_wal(conn: sqlite3.Connection, *, seconds: float = 10.0) -> None:
    """Switch to WAL. On a brand-new file several processes may race to do it, and SQLite answers
    "database is locked" at once (the busy timeout does not cover it): retry, bounded."""
    deadline = time.monotonic() + seconds
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations in one transaction each; returns the schema version."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    version = int(row[0] or 0)
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            again = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
            if again >= number:  # another process got there first
                conn.execute("COMMIT")
                continue
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if number in BACKFILL:
                backfill(Database(conn, "sqlite"))
            conn.execute("INSERT INTO schema_version(version) VALUES (?)", (number,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version = number
    return version


def db_path(home: Path) -> Path:
    return home / "keel.db"
