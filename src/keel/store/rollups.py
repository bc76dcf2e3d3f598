"""Hourly rollups of model calls, kept as traces are written: per (tenant, hour, feature, model) the
calls, errors, tokens, cost and latency sum; per (tenant, hour, feature) a latency histogram in
log-spaced bins (each 10% wider than the last, so a percentile read from it is within ±5%).

Dashboards and 30-day reports read these instead of scanning every trace: a month of a busy
tenant is a few thousand rows, whatever the trace volume. Updates are additive upserts — commutative,
so replicas writing the same hour at once need no lock — applied in key order (no deadlocks), and
only for rows newly inserted (a rewritten trace is not counted twice).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

from keel.store.db import Database

HOUR = 3600
BASE = 1.1
FLOOR_MS = 0.01  # latencies below this share the lowest bin

UPSERT_HOURS = (
    "INSERT INTO trace_hours(tenant, bucket, feature, model, calls, errors, input_tokens, output_tokens, cost_usd, "
    "latency_ms_sum) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (tenant, bucket, feature, model) DO UPDATE SET "
    "calls = trace_hours.calls + excluded.calls, errors = trace_hours.errors + excluded.errors, "
    "input_tokens = trace_hours.input_tokens + excluded.input_tokens, "
    "output_tokens = trace_hours.output_tokens + excluded.output_tokens, "
    "cost_usd = trace_hours.cost_usd + excluded.cost_usd, "
    "latency_ms_sum = trace_hours.latency_ms_sum + excluded.latency_ms_sum"
)
UPSERT_BINS = (
    "INSERT INTO trace_latency(tenant, bucket, feature, bin, n) VALUES (?,?,?,?,?) "
    "ON CONFLICT (tenant, bucket, feature, bin) DO UPDATE SET n = trace_latency.n + excluded.n"
)


def bin_of(latency_ms: float) -> int:
    return math.floor(math.log(max(latency_ms, FLOOR_MS)) / math.log(BASE))


def bin_value(b: float) -> float:
    """The latency a bin stands for: its geometric middle."""
    return float(BASE ** (b + 0.5))


def _key(rec: Any) -> tuple[str, int, str, str]:
    return (rec.tenant or "default", int(rec.ts // HOUR) * HOUR, rec.feature or "", rec.model or rec.alias or "")


def roll_up(records: Iterable[Any]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(hour rows, bin rows) for a batch of trace records (feature runs are skipped: their model
    calls are rolled up themselves), sorted by key."""
    hours: dict[tuple[str, int, str, str], list[float]] = {}
    bins: dict[tuple[str, int, str, int], int] = {}  # the histogram is per feature, across models
    for rec in records:
        if rec.operation == "feature":
            continue
        key = _key(rec)
        acc = hours.setdefault(key, [0, 0, 0, 0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += rec.status != "ok"
        acc[2] += rec.input_tokens or 0
        acc[3] += rec.output_tokens or 0
        acc[4] += rec.cost_usd or 0.0
        if rec.latency_ms is not None:
            acc[5] += rec.latency_ms
            slot = (*key[:3], bin_of(rec.latency_ms))
            bins[slot] = bins.get(slot, 0) + 1
    hour_rows = [(*k, int(v[0]), int(v[1]), int(v[2]), int(v[3]), v[4], v[5]) for k, v in sorted(hours.items())]
    return hour_rows, [(*k, n) for k, n in sorted(bins.items())]


def apply(db: Database, records: Sequence[Any]) -> None:
    hour_rows, bin_rows = roll_up(records)
    db.many(UPSERT_HOURS, hour_rows)
    db.many(UPSERT_BINS, bin_rows)


def backfill(db: Database, batch: int = 5000) -> None:
    """Roll up traces written before the rollups existed (a migration step)."""
    last = ""
    while True:
        rows = db.all(
            "SELECT id, ts, operation, tenant, feature, model, alias, status, input_tokens, output_tokens, cost_usd, "
            "latency_ms FROM traces WHERE id > ? ORDER BY id LIMIT ?",
            (last, batch),
        )
        if not rows:
            return
        apply(db, [SimpleNamespace(**r) for r in rows])
        last = rows[-1]["id"]


def percentiles(histogram: str, shares: Sequence[float]) -> list[float | None]:
    """Percentiles from a histogram as the store concatenates it: ``bin:n,bin:n,…`` (any order,
    a bin may repeat when hours were merged)."""
    counts: dict[int, int] = {}
    for pair in histogram.split(","):
        slot, _, n = pair.partition(":")
        counts[int(slot)] = counts.get(int(slot), 0) + int(n)
    total = sum(counts.values())
    out: list[float | None] = []
    for share in shares:
        running, found = 0, None
        for b in sorted(counts):
            running += counts[b]
            if running >= share * total:
                found = bin_value(b)
                break
        out.append(found)
    return out


def purge(db: Database, before: float) -> int:
    """Forget whole hours that ended before ``before``."""
    cutoff = int(before // HOUR) * HOUR
    gone = db.run("DELETE FROM trace_hours WHERE bucket < ?", (cutoff,))
    db.run("DELETE FROM trace_latency WHERE bucket < ?", (cutoff,))
    return gone
