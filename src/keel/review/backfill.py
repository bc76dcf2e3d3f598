"""Past runs into a queue: a trace sent by hand (``keel review add``), and a backfill that applies a
condition to the runs already served (``keel review backfill``) — after the threshold changed, or
for a feature that had no ``review:`` yet. Both read what the trace kept (its captured input and
answer, its steps' guard scores and confidence, its notes) and queue ``after`` items; a trace that
has an item keeps it (never re-added). This is what filter-based queues lack when scores arrive
later: the same condition language, run over the stored runs at any time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from keel.features.conditions import Condition
from keel.features.reviewing import answer_flags
from keel.store import Store
from keel.store.reviews import NewItem
from keel.store.traces import TraceRecord, encode_cursor

PAGE = 500


def stored_values(record: TraceRecord) -> dict[str, Any]:
    """What a condition may name, read off a stored feature run (keel.features.reviewing reads the
    same off a live one)."""
    guards = record.found("output guards")
    answer = record.response  # already decoded from the row: the captured answer text
    notes = record.notes or []
    return {
        **answer_flags(answer if isinstance(answer, str) else ""),
        "confidence": guards.get("confidence"),
        "guards": guards.get("scores") or {},
        "cost_usd": record.cost_usd,
        "latency_ms": record.latency_ms,
        "attempts": None,
        "model": record.alias or record.model,
        "prompt_version": record.prompt_version,
        "found_nothing": any("answered without a model call" in n for n in notes),
        "cached": record.found("cache").get("result") in ("exact", "semantic"),
        "citations_valid": not any(n.startswith("citations:") for n in notes),
        "fallback": any(n.startswith("output: every attempt") for n in notes),
    }


def record_item(record: TraceRecord, queue: str, reason: str, sla_minutes: float, capture: str) -> NewItem:
    """An ``after`` item for a stored feature run, its view as the trace kept it."""
    values = stored_values(record)
    view = {
        "feature": record.feature,
        "inputs": record.request,
        "answer": record.response,
        "value": None,
        "sources": [],
        "citations": [],
        "guards": {name: {"score": score, "reason": None} for name, score in values["guards"].items()},
        "notes": record.notes or [],
        "prompt": record.prompt,
        "prompt_version": record.prompt_version,
        "model": values["model"],
        "cost_usd": record.cost_usd,
        "latency_ms": record.latency_ms,
        "capture": capture,
    }
    return NewItem(
        tenant=record.tenant or "default",
        queue=queue,
        trace_id=record.id,
        mode="after",
        view=view,
        due=time.time() + sla_minutes * 60,
        feature=record.feature,
        reason=reason,
        confidence=values["confidence"],
        prompt_version=record.prompt_version,
        model=values["model"],
        cost_usd=record.cost_usd,
    )


@dataclass(slots=True)
class Backfill:
    scanned: int = 0
    matched: int = 0
    queued: int = 0
    already: int = 0


def backfill(
    store: Store,
    feature: str,
    condition: Condition,
    *,
    queue: str,
    since: float,
    tenant: str | None,
    sla_minutes: float,
    capture: str,
    limit: int = 1000,
    dry_run: bool = False,
) -> Backfill:
    """Queue the feature's successful runs since ``since`` that ``condition`` holds on, newest first,
    at most ``limit`` of them."""
    out = Backfill()
    cursor = None
    while out.matched < limit:
        rows = store.traces.find(
            tenant=tenant, feature=feature, operation="feature", status="ok", since=since, limit=PAGE, cursor=cursor
        )
        for record in rows:
            out.scanned += 1
            values = stored_values(record)
            if not condition(values):
                continue
            out.matched += 1
            if not dry_run:
                new = record_item(record, queue, f"backfill: {condition.why(values)}", sla_minutes, capture)
                _, created = store.reviews.add(new)
                out.queued += created
                out.already += not created
            if out.matched >= limit:
                break
        if len(rows) < PAGE:
            break
        cursor = encode_cursor(rows[-1])
    return out
