"""Opening a store: a SQLite file (created and migrated) or a Postgres URL (connected, migrated,
and able to reconnect after the server drops it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.errors import ConfigError
from keel.store.db import Database, redact_url
from keel.store.migrations import migrate
from keel.store.sqlite import connect as connect_sqlite


def open_sqlite(path: Path) -> Database:
    return Database(connect_sqlite(path), "sqlite", where=str(path))


def open_postgres(url: str) -> Database:
    try:
        import psycopg
    except ImportError:
        raise ConfigError("the postgres store needs psycopg: pip install 'keel[postgres]'") from None

    def connect() -> Any:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)

    try:
        conn = connect()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot connect to the store at {redact_url(url)} ({type(exc).__name__}: {redact_url(first)}); "
            "check store.url in keel.yaml and that the server is running"
        ) from None
    db = Database(conn, "postgres", where=redact_url(url), reconnect=connect)
    migrate(db)
    return db
