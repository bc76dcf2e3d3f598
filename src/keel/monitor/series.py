"""Each signal over time, for the Drift page: the reference and the window each cut into 24
buckets, each bucket's value and count, the reference's band (the middle 80% of its buckets'
values), and the change points to mark — what began serving, label moves."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keel.monitor.compare import summary
from keel.monitor.signals import Signal, signal
from keel.monitor.watch import Change, Status
from keel.store import Store
from keel.store.monitors import MonitorRun

BUCKETS = 48


@dataclass(slots=True)
class Series:
    """A signal's buckets: the reference's ``half`` first (its own width), then the window's — each
    half drawn at the same size, so an hour's window is not a sliver beside a week's reference."""

    signal: Signal
    edges: list[float]  # each bucket's start, and the end of the last
    values: list[float | None] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    band: tuple[float, float] | None = None
    reference_buckets: int = 0  # the first buckets are the reference's

    def bucket_of(self, ts: float) -> int | None:
        if not self.edges[0] <= ts < self.edges[-1]:
            return None
        return max(0, min(len(self.edges) - 2, bisect.bisect_right(self.edges, ts) - 1))


def _observations(runs: list[MonitorRun], scores: list[Any], name: str) -> list[tuple[float, Any]]:
    if name.startswith("check:"):
        check = name.removeprefix("check:")
        return [(s.ts, bool(s.passed)) for s in scores if s.check == check and s.status == "ok"]
    return [(r.ts, r.values[name]) for r in runs if name in r.values]


def _edges(lo: float, hi: float, n: int) -> list[float]:
    return [lo + (hi - lo) * i / n for i in range(n)]


def signal_series(store: Store, tenant: str, status: Status, *, buckets: int = BUCKETS) -> list[Series]:
    """The series of every rate and score the status judged, over its reference span and window;
    signals with fewer than two buckets of data are left out (nothing to draw)."""
    start, end = status.window
    ref = status.spec.ref
    lo, hi = (start - ref.seconds, start) if ref.kind == "span" else (ref.start, ref.end)
    if ref.kind == "eval-run" or hi > start:  # no span of time to draw, or one that overlaps the window
        lo, hi = start - (end - start), start
    half = buckets // 2
    edges = [*_edges(lo, hi, half), *_edges(start, end, half), end]
    runs = store.monitors.runs(tenant, status.feature, lo, hi) + store.monitors.runs(tenant, status.feature, start, end)
    scores = store.monitors.scores(tenant, status.feature, lo, end, monitor=status.monitor)
    out = []
    for verdict in status.verdicts:
        sig = verdict.signal
        if sig.kind not in ("rate", "score"):
            continue
        series = Series(sig, edges, reference_buckets=half)
        cut: dict[int, list[Any]] = defaultdict(list)
        for ts, value in _observations(runs, scores, sig.name):
            i = series.bucket_of(ts)
            if i is not None:
                cut[i].append(value)
        if len(cut) < 2:
            continue
        series.values = [summary(cut[i], sig.kind) if cut.get(i) else None for i in range(2 * half)]
        series.counts = [len(cut.get(i, [])) for i in range(2 * half)]
        known = [v for v in series.values[:half] if v is not None]
        if len(known) >= 3:
            series.band = (float(np.percentile(known, 10)), float(np.percentile(known, 90)))
        out.append(series)
    return out


def marks(series: Series, changes: list[Change]) -> list[tuple[int, str]]:
    """Where each change point falls among the buckets, and what it says."""
    out = []
    for c in changes:
        i = series.bucket_of(c.at)
        if i is not None:
            out.append((i, c.describe()))
    return out


__all__ = ["BUCKETS", "Series", "marks", "signal", "signal_series"]
