"""Scoring past runs (``keel monitor backfill --since 7d``): the runs traced before a monitor existed,
or before its checks changed, drawn by the same hash sample a live run would have been, scored by
the same job code under the same daily judge budget. A run that has its monitor's scores keeps
them. The run is scored as its trace kept it: the captured inputs and answer, and each retrieved
chunk's first characters (a trace keeps a snippet, not the whole chunk — the ``why`` of each row
says so, since a grounding check sees less than it would have live).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keel.errors import ConfigError, FeatureNotFound
from keel.features.monitoring import sampled
from keel.features.spec import FeatureSpec, load_feature
from keel.store import Store
from keel.store.traces import TraceRecord

PAGE = 500
WHY = "backfilled from the trace (sources: the snippets it kept)"


def payload_of(record: TraceRecord, monitor: str) -> dict[str, Any]:
    """A stored feature run as a ``monitor`` job's payload."""
    retrieval = record.found("retrieval")
    chunks = retrieval.get("chunks") or []
    return {
        "monitor": monitor,
        "trace_id": record.id,
        "ts": record.ts,
        "why": WHY,
        "inputs": record.request if isinstance(record.request, dict) else {},
        "answer": record.response,
        "value": record.response if isinstance(record.response, dict) else None,
        "sources": [str(c.get("text") or "") for c in chunks],
        "prompt_version": record.prompt_version,
        "model": record.alias or record.model,
        "index_version": retrieval.get("index"),
        "latency_ms": record.latency_ms,
        "cost_usd": record.cost_usd,
    }


def due(
    store: Store, root: Path, tenant: str, since: float, *, feature: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(feature, payload) for each past run a monitor with checks would have sampled and has not
    scored, oldest first."""
    specs: dict[str, FeatureSpec | None] = {}
    after = since
    while True:
        page = store.traces.find(tenant=tenant, feature=feature, operation="feature", after_ts=after, limit=PAGE)
        for record in page:
            name = str(record.feature)
            if name not in specs:
                try:
                    specs[name] = load_feature(root, name)
                except (FeatureNotFound, ConfigError):
                    specs[name] = None
            spec = specs[name]
            if spec is None or record.status != "ok" or record.request is None:
                continue
            scored = {s.monitor for s in store.monitors.scored(tenant, record.id)}
            for monitor, watch in spec.monitors.items():
                if watch.checks and monitor not in scored and sampled(record.id, watch.sample, monitor):
                    yield name, payload_of(record, monitor)
        if len(page) < PAGE:
            return
        after = page[-1].ts
