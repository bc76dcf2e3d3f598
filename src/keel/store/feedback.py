"""Feedback on traces: scores people (or code) attach to a call after the fact — a thumbs up, a
rating, a category, a comment, or a correction with the right answer. Experiment reports read them;
``keel evals promote`` turns corrections and low scores into eval cases.

A value is one of: a boolean (stored as 1.0 / 0.0), a number (finite, stored as is), or a short
category string (stored as a label). Every row names the trace it belongs to, which must exist.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

from keel.config.settings import FeedbackSettings, ScoreConfig
from keel.errors import InvalidRequest
from keel.errors import TraceNotFound as TraceNotFound
from keel.store.db import Database, Where

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
MAX_TEXT = 20_000


@dataclass(frozen=True, slots=True)
class Feedback:
    id: int
    trace_id: str
    name: str
    value: float | None
    label: str | None
    comment: str | None
    correction: str | None
    user: str | None
    at: float


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{field}' must be a string", param=field)
    if len(value) > MAX_TEXT:
        raise InvalidRequest(f"'{field}' is {len(value)} characters; the limit is {MAX_TEXT}", param=field)
    return value


def parse_value(value: Any) -> tuple[float | None, str | None]:
    """(number, label) of a feedback value: true/false, a finite number or a short category."""
    if isinstance(value, bool):
        return (1.0 if value else 0.0), ("true" if value else "false")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidRequest("'value' must be a finite number", param="value")
        return float(value), None
    if isinstance(value, str):
        if not value.strip() or len(value) > 200:
            raise InvalidRequest("a category 'value' is 1–200 characters", param="value")
        return None, value
    if value is not None:
        raise InvalidRequest("'value' is true/false, a number or a category string", param="value")
    return None, None


_COLUMNS = 'id, trace_id, name, value, label, comment, correction, "user", at'


class FeedbackStore:
    """The feedback repository. Feedback belongs to its trace's tenant: a trace of another tenant
    is not found (404), never confirmed."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        trace_id: Any,
        name: Any,
        value: Any = None,
        *,
        tenant: str | None,
        comment: Any = None,
        correction: Any = None,
        user: Any = None,
        scores: FeedbackSettings | None = None,
    ) -> Feedback:
        """Validate and store one piece of feedback on a trace of ``tenant`` (None: any tenant's).
        Arguments arrive straight from HTTP or the CLI, so their types are checked here."""
        if not isinstance(trace_id, str) or not trace_id:
            raise InvalidRequest("'trace_id' must be the trace id from x-keel-trace-id", param="trace_id")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidRequest(
                "'name' must start with a letter and use letters, digits, '_', '.', '-' (e.g. helpful, rating)",
                param="name",
            )
        number, label = parse_value(value)
        comment_, correction_, user_ = _text(comment, "comment"), _text(correction, "correction"), _text(user, "user")
        if value is None and comment_ is None and correction_ is None:
            raise InvalidRequest("give a 'value', a 'comment' or a 'correction'", param="value")
        if scores is not None and scores.scores:
            config = scores.scores.get(name)
            if config is None:
                if scores.strict:
                    known = ", ".join(sorted(scores.scores))
                    raise InvalidRequest(
                        f"unknown score '{name}'; keel.yaml feedback.scores configures: {known}", param="name"
                    )
            elif value is not None:
                check_score(name, config, value)
        where = Where().eq("id", trace_id).eq("tenant", tenant)
        owner = self.db.one(f"SELECT tenant FROM traces WHERE {where}", where.args)
        if owner is None:
            raise TraceNotFound(f"no trace '{trace_id}' (it may still be queued for writing; retry in a second)")
        at = time.time()
        new_id = self.db.scalar(
            'INSERT INTO feedback(trace_id, name, value, label, comment, correction, "user", at, tenant) '
            "VALUES (?,?,?,?,?,?,?,?,?) RETURNING id",
            (trace_id, name, number, label, comment_, correction_, user_, at, owner["tenant"] or "default"),
        )
        return Feedback(int(new_id or 0), trace_id, name, number, label, comment_, correction_, user_, at)

    def for_trace(self, trace_id: str, *, tenant: str | None) -> list[Feedback]:
        where = Where().eq("trace_id", trace_id).eq("tenant", tenant)
        rows = self.db.all(f"SELECT {_COLUMNS} FROM feedback WHERE {where} ORDER BY id", where.args)
        return [_feedback(r) for r in rows]

    def on_feature_runs(self, feature: str, *, since: float | None, tenant: str | None) -> list[dict[str, Any]]:
        """Feedback on a feature's runs or on their model calls, newest first, each with the run it
        belongs to and that run's captured request and response (what promotion turns into cases)."""
        where = Where().eq("coalesce(p.feature, t.feature)", feature)
        where.add("coalesce(p.operation, t.operation) = 'feature'").add("f.at >= ?", since or 0.0).eq(
            "f.tenant", tenant
        )
        rows = self.db.all(
            'SELECT f.id, f.trace_id, f.name, f.value, f.label, f.comment, f.correction, f."user", f.at, '
            "coalesce(p.id, t.id) AS run_id, coalesce(p.request, t.request) AS request, "
            "coalesce(p.response, t.response) AS response "
            "FROM feedback f JOIN traces t ON t.id = f.trace_id "
            "LEFT JOIN traces p ON p.id = t.parent AND p.operation = 'feature' "
            f"WHERE {where} ORDER BY f.at DESC",
            where.args,
        )
        for row in rows:
            row["feedback"] = _feedback(row)
        return rows

    def on_experiment(self, experiment: str, *, tenant: str) -> list[dict[str, Any]]:
        """(arm, name, value) of every scored piece of feedback on an experiment's runs."""
        return self.db.all(
            "SELECT t.arm, f.name, f.value FROM feedback f JOIN traces t ON t.id = f.trace_id "
            "WHERE t.experiment = ? AND t.operation = 'feature' AND f.value IS NOT NULL AND t.tenant = ?",
            (experiment, tenant),
        )


def _feedback(row: dict[str, Any]) -> Feedback:
    return Feedback(
        row["id"],
        row["trace_id"],
        row["name"],
        row["value"],
        row["label"],
        row["comment"],
        row["correction"],
        row["user"],
        row["at"],
    )


def check_score(name: str, config: ScoreConfig, value: Any) -> None:
    """A value against its score config (``feedback.scores`` in keel.yaml)."""
    kind = config.type
    if kind == "boolean" and not isinstance(value, bool):
        raise InvalidRequest(f"score '{name}' is true or false, not {value!r}", param="value")
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"score '{name}' is a number, not {value!r}", param="value")
        if (config.min is not None and value < config.min) or (config.max is not None and value > config.max):
            span = f"{config.min if config.min is not None else '-∞'}–{config.max if config.max is not None else '∞'}"
            raise InvalidRequest(f"score '{name}' is between {span}, not {value:g}", param="value")
    if kind == "categorical" and value not in config.values:
        raise InvalidRequest(f"score '{name}' is one of {', '.join(config.values)}; not {value!r}", param="value")
    if kind == "text" and not isinstance(value, str):
        raise InvalidRequest(f"score '{name}' is text, not {value!r}", param="value")


def is_low(row: Feedback, config: ScoreConfig | None, below: float | None = None) -> bool:
    """Whether this feedback says the answer was bad: a false boolean, a number under the config's
    ``low_below`` (or ``below``), a category listed in ``low``."""
    if config is not None and config.type == "categorical":
        return row.label in config.low
    if row.label in ("true", "false") and row.value is not None:
        return row.value == 0.0
    threshold = below if below is not None else (config.low_below if config is not None else None)
    return row.value is not None and threshold is not None and row.value < threshold
