from __future__ import annotations

import math
from pathlib import Path

import pytest

from keel.errors import InvalidRequest
from keel.store import Store, db_path
from keel.store.feedback import FeedbackStore, TraceNotFound


@pytest.fixture
def conn(home: Path):  # type: ignore[no-untyped-def]
    store = Store.at(db_path(home))
    store.db.run("INSERT INTO traces(id, ts, operation, status, tenant) VALUES ('t1', 0, 'feature', 'ok', 'acme')")
    yield store.feedback
    store.close()


def add_feedback(repo: FeedbackStore, *args: object, **kwargs: object) -> object:
    return repo.add(*args, tenant="acme", **kwargs)  # type: ignore[arg-type]


def feedback_for(repo: FeedbackStore, trace_id: str) -> list[object]:
    return repo.for_trace(trace_id, tenant="acme")  # type: ignore[return-value]


def test_values_are_stored_by_kind(conn) -> None:  # type: ignore[no-untyped-def]
    add_feedback(conn, "t1", "helpful", True, user="u1")
    add_feedback(conn, "t1", "rating", 4)
    add_feedback(conn, "t1", "category", "billing — réclamation")
    add_feedback(conn, "t1", "answer", None, correction="Refunds take 5–10 business days.", comment="wrong")
    rows = feedback_for(conn, "t1")
    assert [(r.name, r.value, r.label) for r in rows] == [
        ("helpful", 1.0, "true"),
        ("rating", 4.0, None),
        ("category", None, "billing — réclamation"),
        ("answer", None, None),
    ]
    assert rows[0].user == "u1" and rows[3].correction == "Refunds take 5–10 business days."


@pytest.mark.parametrize(
    ("args", "kwargs", "param", "message"),
    [
        (("", "helpful", True), {}, "trace_id", "must be the trace id"),
        (("t1", "9lives", True), {}, "name", "must start with a letter"),
        (("t1", "helpful", math.nan), {}, "value", "finite"),
        (("t1", "helpful", [1]), {}, "value", "true/false, a number or a category"),
        (("t1", "helpful", "x" * 201), {}, "value", "1–200 characters"),
        (("t1", "helpful", None), {}, "value", "give a 'value'"),
        (("t1", "helpful", True), {"comment": 3}, "comment", "must be a string"),
        (("t1", "helpful", True), {"correction": "x" * 20_001}, "correction", "the limit is 20000"),
    ],
)
def test_bad_feedback_is_refused_precisely(conn, args, kwargs, param, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest, match=message) as info:
        add_feedback(conn, *args, **kwargs)
    assert info.value.param == param
    assert feedback_for(conn, "t1") == []  # nothing half-written


def test_feedback_needs_an_existing_trace(conn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TraceNotFound, match="no trace 'nope'") as info:
        add_feedback(conn, "nope", "helpful", True)
    assert info.value.status == 404
