"""All state behind repositories: SQLite (embedded, one file under KEEL_HOME) or Postgres (shared by
every replica), chosen by ``store:`` in keel.yaml. Product code receives a repository — never a
connection — and every call on tenant data names the tenant."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from keel.store.answers import AnswerStore
from keel.store.batches import BatchStore
from keel.store.budgets import BudgetStore
from keel.store.db import Database, StoreUnavailable, redact_url
from keel.store.engines import open_postgres, open_sqlite
from keel.store.evals import EvalStore
from keel.store.experiments import ExperimentStore
from keel.store.feedback import FeedbackStore
from keel.store.files import FileStore
from keel.store.jobs import JobStore
from keel.store.keys import DEFAULT_TENANT, ROLES, Caller, Keys
from keel.store.monitors import MonitorStore
from keel.store.prompts import PromptStore
from keel.store.reviews import ReviewStore
from keel.store.sqlite import connect, db_path
from keel.store.traces import TraceRecord, Traces
from keel.store.webhooks import WebhookStore
from keel.store.writer import BatchWriter

if TYPE_CHECKING:
    from keel.config.settings import KeelSettings

__all__ = [
    "DEFAULT_TENANT",
    "ROLES",
    "BatchWriter",
    "Caller",
    "Database",
    "Store",
    "StoreUnavailable",
    "TraceRecord",
    "connect",
    "db_path",
    "open_store",
]


class Store:
    """One database and the repositories over it. The owner closes it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.keys = Keys(db)
        self.traces = Traces(db)
        self.feedback = FeedbackStore(db)
        self.prompts = PromptStore(db)
        self.experiments = ExperimentStore(db)
        self.evals = EvalStore(db)
        self.answers = AnswerStore(db)
        self.budgets = BudgetStore(db)
        self.jobs = JobStore(db)
        self.files = FileStore(db)
        self.batches = BatchStore(db)
        self.webhooks = WebhookStore(db)
        self.reviews = ReviewStore(db, self.jobs)
        self.monitors = MonitorStore(db)

    @classmethod
    def at(cls, path: Path) -> Store:
        """The embedded store in a SQLite file (created and migrated if needed)."""
        return cls(open_sqlite(path))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_database(settings: KeelSettings, home: Path) -> Database:
    """A new connection to the configured store: the SQLite file under ``home``, or the Postgres
    URL (read from its variable now)."""
    if settings.store.backend == "postgres":
        assert settings.store.url is not None  # checked when the settings were loaded
        return open_postgres(settings.store.url.resolve())
    return open_sqlite(db_path(home))


def open_store(settings: KeelSettings, home: Path) -> Store:
    """The configured store, migrated. A Postgres that cannot be reached is a ConfigError naming
    the host (never the password) and the setting to check."""
    return Store(open_database(settings, home))


__all__ += ["AnswerStore", "BudgetStore", "EvalStore", "ExperimentStore", "FeedbackStore", "Keys", "PromptStore"]
__all__ += ["Traces", "open_database", "redact_url"]
