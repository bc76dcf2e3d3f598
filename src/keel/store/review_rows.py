"""What the review store keeps: the table (its migration), an item as read back, what is handed in to
queue one, and a decision (keel.store.reviews)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from keel.store.db import encode_keyset

STATES = ("pending", "claimed", "decided", "expired")
ACTIONS = ("approve", "edit", "reject")
SCORE = {"approve": 1.0, "edit": 0.5, "reject": 0.0}  # the `review` feedback's value


def review_tables(real: str) -> str:
    """The migration that makes the table (``real``: the engine's float type)."""
    return f"""
    CREATE TABLE review_items (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        queue TEXT NOT NULL,
        trace_id TEXT NOT NULL,
        job_id TEXT,
        feature TEXT,
        mode TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        sampled INTEGER NOT NULL DEFAULT 0,
        confidence {real},
        prompt_version INTEGER,
        model TEXT,
        cost_usd {real},
        view TEXT NOT NULL,
        held TEXT,
        claimed_by TEXT,
        claim_until {real},
        due {real} NOT NULL,
        breached INTEGER NOT NULL DEFAULT 0,
        action TEXT,
        output TEXT,
        comment TEXT,
        labels TEXT,
        reviewer TEXT,
        created {real} NOT NULL,
        decided {real}
    );
    CREATE UNIQUE INDEX review_trace ON review_items(tenant, trace_id);
    CREATE INDEX review_queue ON review_items(tenant, queue, status, created);
    CREATE INDEX review_due ON review_items(due) WHERE status IN ('pending', 'claimed') AND breached = 0;
    CREATE INDEX review_job ON review_items(job_id) WHERE job_id IS NOT NULL;
    """


@dataclass(frozen=True, slots=True)
class ReviewItem:
    id: str
    tenant: str
    queue: str
    trace_id: str
    job_id: str | None
    feature: str | None
    mode: str
    status: str
    reason: str | None
    sampled: bool
    confidence: float | None
    prompt_version: int | None
    model: str | None
    cost_usd: float | None
    view: dict[str, Any]
    held: dict[str, Any] | None
    claimed_by: str | None
    claim_until: float | None
    due: float
    breached: bool
    action: str | None
    output: Any
    comment: str | None
    labels: dict[str, Any] | None
    reviewer: str | None
    created: float
    decided: float | None


COLUMNS = tuple(ReviewItem.__dataclass_fields__)


def read_item(row: dict[str, Any], now: float | None = None) -> ReviewItem:
    data = dict(row)
    for name in ("view", "held", "output", "labels"):
        if data[name] is not None:
            data[name] = orjson.loads(data[name])
    data["sampled"], data["breached"] = bool(data["sampled"]), bool(data["breached"])
    now = time.time() if now is None else now
    if data["status"] == "claimed" and (data["claim_until"] or 0) < now:
        data["status"], data["claimed_by"], data["claim_until"] = "pending", None, None  # the claim ran out
    return ReviewItem(**data)


@dataclass(slots=True)
class NewItem:
    """What the review layer hands the store to queue."""

    tenant: str
    queue: str
    trace_id: str
    mode: str
    view: dict[str, Any]
    due: float
    feature: str | None = None
    reason: str | None = None
    sampled: bool = False
    confidence: float | None = None
    prompt_version: int | None = None
    model: str | None = None
    cost_usd: float | None = None
    held: dict[str, Any] | None = None  # hold: {"serve": result, "fallback": result, "on_timeout": …}
    job_payload: dict[str, Any] = field(default_factory=dict)  # hold without a job: the job to create


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    output: Any = None  # edit: the reviewer's answer
    comment: str | None = None
    labels: dict[str, Any] | None = None
    correction: str | None = None  # the feedback's correction (approve: the answer; edit: the edit)
    job_result: Any = None  # hold: what the job succeeds with


def encode_cursor(item: ReviewItem) -> str:
    return encode_keyset(item.created, item.id)


def dump_json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def why_not(item: ReviewItem, who: str, verb: str) -> str:
    if item.status == "decided":
        return f"review item {item.id} was already decided ({item.action} by {item.reviewer})"
    if item.status == "expired":
        return f"review item {item.id} expired ({item.comment or 'its SLA passed'}); nothing to {verb}"
    if item.status == "claimed" and item.claimed_by != who:
        return f"review item {item.id} is claimed by {item.claimed_by} until {clock_of(item.claim_until)}"
    if verb == "decide":
        return f"review item {item.id}: claim it first (POST …/claim); a decision needs a claim that has not run out"
    return f"review item {item.id} is {item.status}; nothing to {verb}"


def clock_of(at: float | None) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(at or 0))
