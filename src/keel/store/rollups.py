"""Rollups of model calls, kept as traces are written, which the dashboard and reports read instead
of scanning every trace (a month of a busy tenant is a few thousand rows, whatever the volume).

Each row is one (tenant, grain, bucket, dimension, value): calls, errors, tokens (cache-read
included), cost, latency and time-to-first-token sums, and feature runs. The dimensions are the
tenant as a whole (``""``), each feature, each model, and each user; the grains are five minutes
(the last hour's charts; kept two days), the hour, and — for users, who are many — the UTC day.
Latency and time to first token also go into log-spaced histograms (each bin 10% wider than the
last, so a percentile read from them is within ±5%), per tenant, feature and model.

Updates are additive upserts — commutative, so replicas writing the same bucket at once need no
lock — applied in key order (no deadlocks), and only for rows newly inserted (a rewritten trace is
not counted twice).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

from keel.errors import UserError
from keel.store.db import Database, Where

HOUR = 3600
DAY = 86_400
FIVE_MINUTES = 300
BASE = 1.1
FLOOR_MS = 0.01  # latencies below this share the lowest bin
SHORT_KEEP_S = 2 * DAY  # five-minute rows are only read for the last hour
#: the grains each dimension is kept at, and whether it keeps histograms
DIMENSIONS: dict[str, tuple[tuple[int, ...], bool]] = {
    "": ((FIVE_MINUTES, HOUR), True),
    "feature": ((FIVE_MINUTES, HOUR), True),
    "model": ((FIVE_MINUTES, HOUR), True),
    "user": ((DAY,), False),
}
SUMS = (
    "runs",
    "calls",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_usd",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_n",
)

UPSERT_ROWS = (
    f"INSERT INTO trace_rollup(tenant, grain, bucket, dim, value, {', '.join(SUMS)}) "
    f"VALUES (?,?,?,?,?,{','.join('?' * len(SUMS))}) ON CONFLICT (tenant, grain, dim, bucket, value) DO UPDATE SET "
    + ", ".join(f"{s} = trace_rollup.{s} + excluded.{s}" for s in SUMS)
)
UPSERT_BINS = (
    "INSERT INTO trace_bins(tenant, grain, bucket, dim, value, kind, bin, n) VALUES (?,?,?,?,?,?,?,?) "
    "ON CONFLICT (tenant, grain, dim, bucket, value, kind, bin) DO UPDATE SET n = trace_bins.n + excluded.n"
)


def bin_of(latency_ms: float) -> int:
    return math.floor(math.log(max(latency_ms, FLOOR_MS)) / math.log(BASE))


def bin_value(b: float) -> float:
    """The latency a bin stands for: its geometric middle."""
    return float(BASE ** (b + 0.5))


def _values(rec: Any) -> dict[str, str]:
    return {"": "", "feature": rec.feature or "", "model": rec.model or rec.alias or "", "user": rec.user or ""}


def roll_up(records: Iterable[Any]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(rollup rows, histogram rows) for a batch of trace records, sorted by key. A feature run
    counts as a run (its model calls are rolled up themselves); a model call as a call."""
    rows: dict[tuple[Any, ...], list[float]] = {}
    bins: dict[tuple[Any, ...], int] = {}
    for rec in records:
        run = rec.operation == "feature"
        tenant = rec.tenant or "default"
        values = _values(rec)
        for dim, (grains, histograms) in DIMENSIONS.items():
            if run and dim == "model":
                continue
            for grain in grains:
                key = (tenant, grain, dim, int(rec.ts // grain) * grain, values[dim])  # the primary key's order
                acc = rows.setdefault(key, [0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0])
                if run:
                    acc[0] += 1
                    continue
                acc[1] += 1
                acc[2] += rec.status != "ok"
                acc[3] += rec.input_tokens or 0
                acc[4] += rec.output_tokens or 0
                acc[5] += getattr(rec, "cached_tokens", 0) or 0
                acc[6] += rec.cost_usd or 0.0
                ttft = getattr(rec, "ttft_ms", None)
                if rec.latency_ms is not None:
                    acc[7] += rec.latency_ms
                if ttft is not None:
                    acc[8] += ttft
                    acc[9] += 1
                if not histograms:
                    continue
                for kind, ms in (("l", rec.latency_ms), ("t", ttft)):
                    if ms is not None:
                        slot = (*key, kind, bin_of(ms))  # (tenant, grain, dim, bucket, value, kind, bin)
                        bins[slot] = bins.get(slot, 0) + 1
    out_rows = [
        (t, g, b, d, v, *(int(x) if i not in (6, 7, 8) else x for i, x in enumerate(acc)))
        for (t, g, d, b, v), acc in sorted(rows.items())
    ]
    out_bins = [(t, g, b, d, v, k, bn, n) for (t, g, d, b, v, k, bn), n in sorted(bins.items())]  # key order
    return out_rows, out_bins


#: Postgres takes a batch's upserts as one statement over arrays (``unnest``): one round trip a table,
#: not one a row — the writer's cost, with a row per (bucket, user) in most batches
_ROW_TYPES = ("text", "int", "bigint", "text", "text", *("bigint",) * 6, "float8", "float8", "float8", "bigint")
_BIN_TYPES = ("text", "int", "bigint", "text", "text", "text", "int", "bigint")


def _unnest(upsert: str, types: Sequence[str]) -> str:
    head, _, tail = upsert.partition(" VALUES (")
    conflict = tail[tail.index(" ON CONFLICT") :]
    return f"{head} SELECT * FROM unnest({', '.join(f'?::{t}[]' for t in types)}){conflict}"


PG_ROWS, PG_BINS = _unnest(UPSERT_ROWS, _ROW_TYPES), _unnest(UPSERT_BINS, _BIN_TYPES)


def apply(db: Database, records: Sequence[Any]) -> None:
    rows, bins = roll_up(records)
    if not db.postgres:
        db.many(UPSERT_ROWS, rows)
        db.many(UPSERT_BINS, bins)
        return
    for sql, batch in ((PG_ROWS, rows), (PG_BINS, bins)):
        if batch:  # keys are unique within a batch (roll_up summed them), as ON CONFLICT needs
            db.run(sql, tuple(list(column) for column in zip(*batch, strict=True)))


def backfill(db: Database, batch: int = 5000) -> None:
    """Roll up traces written before these rollups existed (a migration step)."""
    last = ""
    while True:
        rows = db.all(
            'SELECT id, ts, operation, tenant, "user", feature, model, alias, status, input_tokens, output_tokens, '
            "cached_tokens, cost_usd, latency_ms, ttft_ms FROM traces WHERE id > ? ORDER BY id LIMIT ?",
            (last, batch),
        )
        if not rows:
            return
        apply(db, [SimpleNamespace(**r) for r in rows])
        last = rows[-1]["id"]


def percentiles_of(counts: dict[int, int], shares: Sequence[float]) -> list[float | None]:
    """Percentiles from a histogram: bin → count (the store merges buckets before it gets here)."""
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


def grain_for(dim: str, window_s: float, bucket_s: int = 0) -> int:
    """The grain a window of ``window_s`` drawn in ``bucket_s`` buckets (0: one) is read at: days for
    daily buckets, five minutes for the last two hours, else the hour; users only by the day."""
    grains, _ = DIMENSIONS[dim]
    if bucket_s and bucket_s % DAY == 0 and DAY in grains:
        return DAY
    if window_s <= 2 * HOUR and FIVE_MINUTES in grains:
        return FIVE_MINUTES
    return HOUR if HOUR in grains else max(grains)


def purge(db: Database, before: float | None) -> int:
    """Forget whole buckets that ended before ``before`` (None: keep them all), and five-minute
    buckets past their two days whatever the retention (they are only read for the last hour)."""
    gone = 0
    short = time.time() - SHORT_KEEP_S
    for grain in (FIVE_MINUTES, HOUR, DAY):
        if grain == FIVE_MINUTES:
            until = short if before is None else max(before, short)
        elif before is None:
            continue
        else:
            until = before
        cutoff = int(until) // grain * grain
        gone += db.run("DELETE FROM trace_rollup WHERE grain = ? AND bucket < ?", (grain, cutoff))
        db.run("DELETE FROM trace_bins WHERE grain = ? AND bucket < ?", (grain, cutoff))
    return gone


def read(
    db: Database,
    *,
    tenant: str | None,
    since: float,
    by: str | None = None,
    bucket_s: int = HOUR,
    feature: str | None = None,
    values: Sequence[str | None] | None = None,
    percentiles: bool = True,
) -> list[dict[str, Any]]:
    """Model calls since ``since``, per bucket of ``bucket_s`` (0: one bucket for the whole window)
    and per ``by`` value (None: the tenant as a whole; ``feature``, ``model``, ``user`` or ``tenant``;
    ``values`` keeps only those): feature runs, calls, errors, tokens (cache reads too), cost, mean
    latency and time to first token, and — unless ``percentiles`` is off — latency p50/p75/p95 and
    time-to-first-token p50/p95 from the histograms (within ±5%; users have none). Never the trace
    rows; daily buckets read the daily rollups."""
    dim = "" if by in (None, "tenant") else by
    if dim not in DIMENSIONS:
        raise UserError(f"dashboards split by feature, model, user or tenant, not {by!r}")
    if feature is not None:
        dim = "feature"
    grain = grain_for(dim, time.time() - since, bucket_s)
    if bucket_s % grain:
        raise UserError(f"dashboard buckets here are whole multiples of {grain} s")
    where = Where().add("grain = ?", grain).add("dim = ?", dim).add("bucket >= ?", int(since // grain) * grain)
    where.eq("tenant", tenant).eq("value", feature)
    value = "tenant" if by == "tenant" else "value"
    if values is not None:  # only these (a page's busiest): the rest are not read back
        where.add(f"{value} IN ({', '.join('?' * len(values))})" if values else "1 = 0", *(v or "" for v in values))
    clause, args = str(where), where.args
    span = f"(bucket / {bucket_s}) * {bucket_s}" if bucket_s else "0"  # integer division on both engines
    sums = ", ".join(f"sum({s}) AS {s}" for s in SUMS)
    rows = db.all(
        f"SELECT {span} AS bucket, {value} AS value, {sums} FROM trace_rollup WHERE {clause} "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        args,
    )
    found: dict[tuple[Any, Any, str], dict[int, int]] = {}
    if percentiles and DIMENSIONS[dim][1]:
        for h in db.all(  # the engine merges the buckets' bins: a few rows per value, not thousands
            f"SELECT {span} AS bucket, {value} AS value, kind, bin, sum(n) AS n FROM trace_bins "
            f"WHERE {clause} GROUP BY 1, 2, 3, 4",
            args,
        ):
            found.setdefault((h["bucket"], h["value"], h["kind"]), {})[int(h["bin"])] = int(h["n"])
    for row in rows:
        latency, ttft = found.get((row["bucket"], row["value"], "l")), found.get((row["bucket"], row["value"], "t"))
        row["p50_ms"], row["p75_ms"], row["p95_ms"] = (
            percentiles_of(latency, (0.5, 0.75, 0.95)) if latency else (None, None, None)
        )
        row["ttft_p50_ms"], row["ttft_p95_ms"] = percentiles_of(ttft, (0.5, 0.95)) if ttft else (None, None)
        row["mean_ms"] = row["latency_ms_sum"] / row["calls"] if row["calls"] else None
        row["ttft_mean_ms"] = row["ttft_ms_sum"] / row["ttft_n"] if row["ttft_n"] else None
        row["value"] = row["value"] or None
    return rows
