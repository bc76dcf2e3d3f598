"""Small, honest statistics for reports: percentiles, Wilson intervals for rates, and seeded
bootstrap intervals for means, medians and differences. Pure functions over lists of floats."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
RESAMPLES = 2000


@dataclass(frozen=True, slots=True)
class Interval:
    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.value:.3g} [{self.low:.3g}, {self.high:.3g}]"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0–100, linear interpolation); None for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def wilson(successes: int, n: int) -> Interval | None:
    """The 95% Wilson score interval of a rate (good at small n and near 0 or 1)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def rate_difference(s1: int, n1: int, s2: int, n2: int) -> Interval | None:
    """p2 − p1 with Newcombe's hybrid score interval (from the two Wilson intervals)."""
    a, b = wilson(s1, n1), wilson(s2, n2)
    if a is None or b is None:
        return None
    d = b.value - a.value
    low = d - math.sqrt((b.value - b.low) ** 2 + (a.high - a.value) ** 2)
    high = d + math.sqrt((b.high - b.value) ** 2 + (a.value - a.low) ** 2)
    return Interval(d, low, high)


def _rng(seed: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))


Statistic = Callable[[np.ndarray], np.ndarray]


def _mean(samples: np.ndarray) -> np.ndarray:
    return np.asarray(samples.mean(axis=-1))


def _median(samples: np.ndarray) -> np.ndarray:
    return np.asarray(np.median(samples, axis=-1))


STATISTICS: dict[str, Statistic] = {"mean": _mean, "median": _median}


def bootstrap(values: Sequence[float], *, stat: str = "mean", seed: str = "keel") -> Interval | None:
    """A 95% percentile-bootstrap interval of ``stat`` (seeded: the same data gives the same interval)."""
    if not len(values):
        return None
    data = np.asarray(values, dtype=float)
    fn = STATISTICS[stat]
    draws = fn(data[_rng(seed).integers(0, len(data), size=(RESAMPLES, len(data)))])
    return Interval(float(fn(data)), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5)))


def bootstrap_difference(
    first: Sequence[float], second: Sequence[float], *, stat: str = "mean", seed: str = "keel"
) -> Interval | None:
    """``stat(second) − stat(first)`` with a 95% bootstrap interval, resampling each group apart."""
    if not len(first) or not len(second):
        return None
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    fn = STATISTICS[stat]
    rng = _rng(seed)
    da = fn(a[rng.integers(0, len(a), size=(RESAMPLES, len(a)))])
    db = fn(b[rng.integers(0, len(b), size=(RESAMPLES, len(b)))])
    diff = db - da
    return Interval(float(fn(b) - fn(a)), float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5)))


def auc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """The ROC AUC of ``scores`` for the ``positives`` (Mann–Whitney, ties counting half): the
    chance that a positive scores above a negative. Both classes must be present."""
    pos = [s for s, p in zip(scores, positives, strict=True) if p]
    neg = [s for s, p in zip(scores, positives, strict=True) if not p]
    if not pos or not neg:
        raise ValueError("AUC needs at least one positive and one negative")
    ranked = sorted(scores)
    rank: dict[float, float] = {}
    i = 0
    while i < len(ranked):  # the average 1-based rank of each distinct score
        j = i
        while j + 1 < len(ranked) and ranked[j + 1] == ranked[i]:
            j += 1
        rank[ranked[i]] = (i + j) / 2 + 1
        i = j + 1
    u = sum(rank[s] for s in pos) - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))
