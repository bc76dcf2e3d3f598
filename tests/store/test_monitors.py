"""The monitor store (``keel.testing.monitor_conformance``) on both backends: SQLite, and a real
PostgreSQL started for the test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.store.engines import open_postgres, open_sqlite
from keel.testing.jobs_conformance import Opener
from keel.testing.monitor_conformance import MonitorStoreConformance


class TestSQLiteMonitors(MonitorStoreConformance):
    @pytest.fixture
    def opener(self, tmp_path: Path) -> Opener:
        return lambda: open_sqlite(tmp_path / "keel.db")


class TestPostgresMonitors(MonitorStoreConformance):
    @pytest.fixture
    def opener(self, pg_url: str) -> Opener:
        return lambda: open_postgres(pg_url)
