"""Step 10's hand-off to the monitors: for each ``monitors:`` entry whose sample a finished run falls
in (a stable draw from its trace id), one ``monitor`` job that scores it off the request path
(keel.monitor). The request pays a hash per monitor and, when sampled, one queue insert — never a
check, an embedding or a judge. A queue that cannot be reached loses the sample, counted and
logged, never the answer."""

from __future__ import annotations

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
        index = next((s["found"].get("index") for s in ctx.steps if s.get("name") == "retrieval"), None)
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
            "index_version": index,
            "latency_ms": result.latency_ms,
            "cost_usd": result.cost_usd,
        })  # fmt: skip
    return out


def enqueue_samples(store: Store, plan: Plan) -> int:
    """Queue the scoring of a finished run for each monitor that samples it; how many were queued. A
    replayed (cached) answer was scored when it was made, so is not scored again."""
    if not plan.spec.monitors or plan.result.cache in ("exact", "semantic"):
        return 0
    queued = 0
    for payload in payloads(plan):
        try:
            store.jobs.enqueue(plan.ctx.tenant or "default", KIND, payload, feature=plan.spec.name, max_attempts=3)
            queued += 1
        except StoreUnavailable as exc:
            LOST["samples"] += 1
            log.warning("monitor %s: lost the sample of run %s (%s)", payload["monitor"], payload["trace_id"], exc)
    return queued
