"""Feedback on traces: scores people (or code) attach to a call after the fact — a thumbs up, a
rating, a category, a comment, or a correction with the right answer. Experiment reports read them;
the evals issue turns corrections and low scores into eval cases.

A value is one of: a boolean (stored as 1.0 / 0.0), a number (finite, stored as is), or a short
category string (stored as a label). Every row names the trace it belongs to, which must exist.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from keel.config.settings import FeedbackSettings, ScoreConfig
from keel.errors import InvalidRequest, UserError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
MAX_TEXT = 20_000


class TraceNotFound(UserError):
    status = 404
    code = "trace_not_found"


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


def add_feedback(
    conn: sqlite3.Connection,
    trace_id: Any,
    name: Any,
    value: Any = None,
    *,
    comment: Any = None,
    correction: Any = None,
    user: Any = None,
    scores: FeedbackSettings | None = None,
) -> Feedback:
    """Validate and store one piece of feedback; the trace must exist (full id). Arguments arrive
    straight from HTTP or the CLI, so their types are checked here."""
    if not isinstance(trace_id, str) or not trace_id:
        raise InvalidRequest("'trace_id' must be the trace id from x-keel-trace-id", param="trace_id")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(
            "'name' must start with a letter and use letters, digits, '_', '.', '-' (e.g. helpful, rating)",
            param="name",
        )
    number: float | None = None
    label: str | None = None
    if isinstance(value, bool):
        number, label = (1.0 if value else 0.0), ("true" if value else "false")
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidRequest("'value' must be a finite number", param="value")
        number = float(value)
    elif isinstance(value, str):
        if not value.strip() or len(value) > 200:
            raise InvalidRequest("a category 'value' is 1–200 characters", param="value")
        label = value
    elif value is not None:
        raise InvalidRequest("'value' is true/false, a number or a category string", param="value")
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
    if conn.execute("SELECT 1 FROM traces WHERE id = ?", (trace_id,)).fetchone() is None:
        raise TraceNotFound(f"no trace '{trace_id}' (it may still be queued for writing; retry in a second)")
    at = time.time()
    cursor = conn.execute(
        "INSERT INTO feedback(trace_id, name, value, label, comment, correction, user, at) VALUES (?,?,?,?,?,?,?,?)",
        (trace_id, name, number, label, comment_, correction_, user_, at),
    )
    return Feedback(int(cursor.lastrowid or 0), trace_id, name, number, label, comment_, correction_, user_, at)


def feedback_for(conn: sqlite3.Connection, trace_id: str) -> list[Feedback]:
    rows = conn.execute(
        "SELECT id, trace_id, name, value, label, comment, correction, user, at FROM feedback "
        "WHERE trace_id = ? ORDER BY id",
        (trace_id,),
    ).fetchall()
    return [Feedback(*tuple(r)) for r in rows]


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
