from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.rag.embedder import LocalMiniLM


@pytest.fixture(scope="session")
def pg_uri(pg_server: Any) -> str:
    """The session's real PostgreSQL 16 with pgvector (its own database)."""
    return str(pg_server.url)


@pytest.fixture
def conn(pg_uri: str) -> Iterator[Any]:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")  # only the Postgres tests skip
    with psycopg.connect(pg_uri, autocommit=True) as connection:
        yield connection
        for (table,) in connection.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'keel_%'").fetchall():
            connection.execute(f"DROP TABLE {table}")


DOCS = {
    "keys.md": "# API keys\n\n## Rotating\nOpen Settings, then API keys, and click Rotate. The old key works for 24 "
    "hours.\n\n## Revoking\nRevoke a key at once when it leaks.\n",
    "billing.md": "# Billing\n\nInvoices are emailed monthly. Refunds take five business days.\n",
    "guide/kafka.txt": "Kafka consumers rebalance when partitions are added to a topic.\n",
}


@pytest.fixture(scope="module")
def minilm() -> LocalMiniLM:
    return LocalMiniLM()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root
