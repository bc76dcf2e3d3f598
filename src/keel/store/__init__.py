"""Storage: SQLite (WAL) with migrations, a batched background writer, keys and traces."""

from keel.store.sqlite import connect, db_path
from keel.store.traces import TraceRecord
from keel.store.writer import BatchWriter

__all__ = ["BatchWriter", "TraceRecord", "connect", "db_path"]
