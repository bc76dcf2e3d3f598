"""The job queue's conformance suite (``keel.testing.jobs_conformance``) on both backends: SQLite, and
a real PostgreSQL started for the test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.store.engines import open_postgres, open_sqlite
from keel.testing.jobs_conformance import JobQueueConformance, Opener


class TestSQLiteJobs(JobQueueConformance):
    @pytest.fixture
    def opener(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Opener:
        monkeypatch.setenv("KEEL_JOBS_TEST_DB", str(tmp_path / "keel.db"))  # for the worker killed mid-job
        return lambda: open_sqlite(tmp_path / "keel.db")


class TestPostgresJobs(JobQueueConformance):
    @pytest.fixture
    def opener(self, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Opener:
        monkeypatch.setenv("KEEL_JOBS_TEST_DB", pg_url)
        return lambda: open_postgres(pg_url)
