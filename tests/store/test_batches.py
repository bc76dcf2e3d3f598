"""Files, batches, their lines and the webhook outbox (``keel.testing.batch_conformance``) on both
backends: SQLite, and a real PostgreSQL started for the test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.store.engines import open_postgres, open_sqlite
from keel.testing.batch_conformance import BatchStoreConformance
from keel.testing.jobs_conformance import Opener


class TestSQLiteBatches(BatchStoreConformance):
    @pytest.fixture
    def opener(self, tmp_path: Path) -> Opener:
        return lambda: open_sqlite(tmp_path / "keel.db")


class TestPostgresBatches(BatchStoreConformance):
    @pytest.fixture
    def opener(self, pg_url: str) -> Opener:
        return lambda: open_postgres(pg_url)
