"""A throwaway PostgreSQL 16 (with pgvector) from PyPI's ``pgserver``, on a Unix socket — no
Docker, no system packages. For tests and benchmarks of the Postgres store and retrieval:

    with PostgresServer() as pg:
        url = pg.database()          # a fresh, empty database on that server
        settings = ... 'store: {backend: postgres, url: {"$env": "KEEL_PG_URL"}}'

Each ``database()`` is new, so tests never see each other's tables.
"""

from __future__ import annotations

import importlib
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit


class PostgresServer:
    def __init__(self, data: Path | None = None) -> None:
        try:
            pgserver: Any = importlib.import_module("pgserver")
        except ImportError:
            raise RuntimeError(
                "pgserver is not installed: `make install-dev` installs it (pip install pgserver)"
            ) from None
        self._pgserver = pgserver
        self._tmp = tempfile.TemporaryDirectory(prefix="keel-pg-") if data is None else None
        self.data = data or Path(self._tmp.name if self._tmp else ".")
        self._server: Any = None

    def start(self) -> PostgresServer:
        self._server = self._pgserver.get_server(self.data, cleanup_mode="stop")
        return self

    @property
    def url(self) -> str:
        """The server's own database (``postgres``)."""
        assert self._server is not None, "start() the server first"
        return str(self._server.get_uri())

    def database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        name = name or f"keel_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def url_for(self, name: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + quote(name), parts.query, parts.fragment))

    def drop(self, url: str) -> None:
        """Drop a database made by ``database()`` (its connections are ended first)."""
        import psycopg

        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
