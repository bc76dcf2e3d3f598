"""Step 10's hand-off to the monitors: for each ``monitors:`` entry whose sample a finished run falls
in (a stable draw from its trace id), one ``monitor`` job that scores it off the request path
(keel.monitor). The request pays a hash per monitor and, when sampled, one queue insert (handed to
a thread on Postgres) — never a check, an embedding or a judge. A queue that cannot be reached
loses the sample, counted and logged, never the answer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from keel.features.guarding import unrestored
from keel.features.monitoring import KIND, sampled
from keel.features.result import Plan
from keel.store import Store, StoreUnavailable

log = logging.getLogger("keel.monitor")
LOST = {"samples": 0}  # samples the queue could not take (/metrics)


def payloads(plan: Plan) -> list[dict[str, Any]]:
    """What each monitor that samples this run scores: the run as the checks see it — the inputs
    and the answer as the trace keeps them (redacted), the sources in their citation order."""
    spec, result, ctx = plan.spec, plan.result, plan.ctx
    out = []
    for name, watch in spec.monitors.items():
        if not sampled(result.trace_id, watch.sample, name):
            continue
        out.append({
            "monitor": name,
            "trace_id": result.trace_id,
            "ts": ctx.started,
            "why": f"sampled ({watch.sample:.0%} of runs, by trace id)",
            "inputs": plan.inputs,
            "answer": unrestored(result.answer, plan),
            "value": result.value,
            "sources": [s.text for s in result.sources],
            "prompt_version": result.prompt_version,
            "model": result.model,
            "index_version": plan.index,
            "latency_ms": result.latency_ms,
            "cost_usd": result.cost_usd,
        })  # fmt: skip
    return out


def enqueue_samples(store: Store, plan: Plan) -> int:
    """Queue the scoring of a finished run for each monitor that samples it; how many were handed
    over. A replayed (cached) answer was scored when it was made, so is not scored again. On
    Postgres the insert (a network round trip) runs in a worker thread, not awaited; on SQLite it is
    inline (tens of microseconds, cheaper than a thread hop)."""
    if not plan.spec.monitors or plan.result.cache in ("exact", "semantic"):
        return 0
    found = payloads(plan)
    if not found:
        return 0
    tenant, feature = plan.ctx.tenant or "default", plan.spec.name
    if store.db.postgres:
        try:
            asyncio.get_running_loop().run_in_executor(None, _enqueue, store, tenant, feature, found)
            return len(found)
        except RuntimeError:  # no running loop: a synchronous caller
            pass
    return _enqueue(store, tenant, feature, found)


def _enqueue(store: Store, tenant: str, feature: str, found: list[dict[str, Any]]) -> int:
    queued = 0
    for payload in found:
        try:
            store.jobs.enqueue(tenant, KIND, payload, feature=feature, max_attempts=3)
            queued += 1
        except StoreUnavailable as exc:
            LOST["samples"] += 1
            log.warning("monitor %s: lost the sample of run %s (%s)", payload["monitor"], payload["trace_id"], exc)
    return queued
