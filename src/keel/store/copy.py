"""Copy an embedded store into another (SQLite → Postgres): every table, in batches, ids kept,
counts checked at the end. The target must be empty, so a copy is never merged by accident."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keel.errors import UserError
from keel.store.db import Database
from keel.store.jobs import COLUMNS as JOB_COLUMNS
from keel.store.monitors import RUN_COLUMNS, SCORE_COLUMNS
from keel.store.reviews import COLUMNS as REVIEW_COLUMNS
from keel.store.rollups import backfill

# (table, its columns), parents before children
TABLES: list[tuple[str, tuple[str, ...]]] = [
    ("tenants", ("name", "created", "deleted")),
    ("api_keys", ("id", "tenant", "name", "prefix", "hash", "created", "revoked", "role")),
    ("prompt_versions", ("prompt", "version", "hash", "source", "git_commit", "git_author", "created")),
    ("prompt_labels", ("prompt", "label", "version")),
    ("label_moves", ("seq", "prompt", "label", "from_version", "to_version", "reason", "at", "tenant", "actor")),
    ("tenant_experiments", ("tenant", "name", "feature", "arms", "status", "started", "stopped", "winner", "note")),
    ("traces", ()),  # every column of TraceRecord, filled in below
    ("feedback", ("id", "trace_id", "name", "value", "label", "comment", "correction", "user", "at", "tenant")),
    ("eval_runs", ("id", "suite", "feature", "started", "finished", "status", "label", "summary", "tenant")),
    ("eval_results", ("run_id", "case_id", "result")),
    ("eval_cache", ("key", "suite", "case_id", "result", "at", "tenant")),
    ("eval_promoted", ("suite", "trace_id", "case_id", "at", "tenant")),
    ("jobs", tuple(JOB_COLUMNS)),
    ("review_items", REVIEW_COLUMNS),
    ("monitor_runs", RUN_COLUMNS),
    ("monitor_scores", tuple(c.strip() for c in SCORE_COLUMNS.split(","))),
    ("monitor_inputs", ("tenant", "trace_id", "feature", "ts", "vector")),
    ("monitor_alerts", ("id", "tenant", "feature", "signal", "opened", "closed", "message", "detail")),
    ("budget_spend", ("bucket", "spent_nusd", "spent_tokens", "alerted", "expires")),
    ("budget_holds", ("reservation", "bucket", "nusd", "tokens", "expires")),
    (
        "cache_entries",
        ("key", "scope", "feature", "text", "vector", "value", "trace_id", "created", "expires", "hits", "tenant"),
    ),
]
# identity columns whose sequences move past the copy
IDENTITY = {"label_moves": "seq", "feedback": "id", "monitor_alerts": "id"}


def _columns(table: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    if table == "traces":
        from keel.store.traces import COLUMNS

        return tuple(COLUMNS)
    return columns


def _quoted(column: str) -> str:
    return f'"{column}"' if column == "user" else column


@dataclass(frozen=True, slots=True)
class Copied:
    table: str
    source: int
    target: int


def copy_store(
    source: Database, target: Database, *, batch: int = 2000, progress: Callable[[str, int, int], None] | None = None
) -> list[Copied]:
    """Copy every table; raises if the target holds data already or a count differs afterwards."""
    busy = [t for t, _ in TABLES if target.scalar(f"SELECT count(*) FROM {t}")]
    if busy:
        raise UserError(f"the target store already holds data ({', '.join(busy)}); copy into an empty database")
    out = []
    for table, columns in TABLES:
        cols = _columns(table, columns)
        names = ", ".join(_quoted(c) for c in cols)
        total = int(source.scalar(f"SELECT count(*) FROM {table}"))
        insert = f"INSERT INTO {table}({names}) VALUES ({', '.join('?' * len(cols))})"
        done = 0
        while done < total:
            rows = source.all(f"SELECT {names} FROM {table} ORDER BY rowid LIMIT ? OFFSET ?", (batch, done))
            if not rows:
                break
            with target.transaction():
                target.many(insert, [tuple(r[c] for c in cols) for r in rows])
            done += len(rows)
            if progress is not None:
                progress(table, done, total)
        if table in IDENTITY and target.postgres and total:
            column = IDENTITY[table]
            target.run(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), (SELECT max({column}) FROM {table}))"
            )
        out.append(Copied(table, total, int(target.scalar(f"SELECT count(*) FROM {table}"))))
    with target.transaction():  # the dashboard's rollups, rebuilt from the traces copied
        backfill(target)
    wrong = [c for c in out if c.source != c.target]
    if wrong:
        said = ", ".join(f"{c.table} {c.source} → {c.target}" for c in wrong)
        raise UserError(f"the copy does not match the source: {said}")
    return out
