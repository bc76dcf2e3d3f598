"""A window against its reference, signal by signal, each with the test its kind calls for; then
Benjamini–Hochberg across the feature's signals, so that watching twenty of them does not mean a
weekly false alarm. A move counts only when it is both significant (adjusted p ≤ the FDR) and big
enough to matter — large samples make any shift significant, and nobody wants an alert for a
0.3-point move:

- a rate: 2 points or more;
- a score: a Wasserstein distance of a tenth of the reference's spread, and at least 0.02 for
  quality scores (guards, confidence: 0..1) or 5% of the level for the rest (so a near-constant
  cost per call does not alarm on a 1% move);
- a category: PSI 0.1 (moderate);
- input embeddings: a classifier AUC of 0.55.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from keel.monitor import stats
from keel.monitor.signals import Signal, signal
from keel.store.monitors import MonitorRun, Score

MIN_RATE_CHANGE = 0.02
MIN_SCORE_CHANGE = 0.1  # Wasserstein distance over the reference's standard deviation …
MIN_LEVEL_CHANGE = 0.05  # … and over its mean (a near-constant reference: cost per call)
MIN_PSI = stats.PSI_MODERATE
MIN_AUC = 0.55


@dataclass(slots=True)
class Sample:
    """What one window holds: its runs, their checks' scores, their feedback, their input vectors."""

    runs: list[MonitorRun] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    feedback: list[tuple[str, str, float]] = field(default_factory=list)  # (trace id, name, value)
    inputs: np.ndarray | None = None

    def series(self) -> dict[str, list[Any]]:
        """Each signal's observations in this window."""
        out: dict[str, list[Any]] = defaultdict(list)
        for run in self.runs:
            for name, value in run.values.items():
                out[name].append(value)
        for s in self.scores:
            if s.status == "ok" and s.passed is not None:
                out[f"check:{s.check}"].append(bool(s.passed))
        by_name: dict[str, list[float]] = defaultdict(list)
        for _, name, value in self.feedback:
            by_name[name].append(value)
        for name, values in by_name.items():
            if set(values) <= {0.0, 1.0}:
                out[f"thumbs:{name}"].extend(v == 1.0 for v in values)
            else:
                out[f"feedback:{name}"].extend(values)
        return dict(out)


@dataclass(frozen=True, slots=True)
class Verdict:
    signal: Signal
    verdict: str  # ok | drop | drift | improved | too few | no reference
    current: float | None = None
    reference: float | None = None
    n: int = 0
    n_reference: int = 0
    test: str | None = None
    p: float | None = None
    effect: float | None = None  # rate difference, Wasserstein distance, PSI or AUC
    adjusted_p: float | None = None

    @property
    def alarming(self) -> bool:
        return self.verdict in ("drop", "drift")

    def as_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal.name,
            "label": self.signal.label,
            "family": self.signal.family,
            "verdict": self.verdict,
            "current": self.current,
            "reference": self.reference,
            "n": self.n,
            "n_reference": self.n_reference,
            "test": self.test,
            "p": self.p,
            "adjusted_p": self.adjusted_p,
            "effect": self.effect,
        }


def summary(values: Sequence[Any], kind: str) -> float | None:
    """A signal's one figure: a rate, a mean, or (categories) the top category's share."""
    if not values:
        return None
    if kind == "rate":
        return sum(bool(v) for v in values) / len(values)
    if kind == "score":
        return float(np.mean(np.asarray(values, dtype=float)))
    counts = Counter(values)
    return counts.most_common(1)[0][1] / len(values)


def _one(sig: Signal, cur: Sequence[Any], ref: Sequence[Any], min_samples: int) -> tuple[Verdict, bool]:
    """The verdict before multiple-testing control, and whether the move is big enough to matter."""
    n, m = len(cur), len(ref)
    base: dict[str, Any] = {
        "current": summary(cur, sig.kind),
        "reference": summary(ref, sig.kind),
        "n": n,
        "n_reference": m,
    }
    if m == 0:
        return Verdict(sig, "no reference", **base), False
    if n < min_samples or m < min_samples:
        return Verdict(sig, "too few", **base), False
    if sig.kind == "rate":
        s1, s2 = sum(bool(v) for v in ref), sum(bool(v) for v in cur)
        t = stats.two_proportion(s1, m, s2, n)
        diff = s2 / n - s1 / m
        return Verdict(sig, "ok", **base, test=t.name, p=t.p, effect=diff), abs(diff) >= MIN_RATE_CHANGE
    if sig.kind == "score":
        a, b = np.asarray(ref, dtype=float), np.asarray(cur, dtype=float)
        t = stats.mann_whitney(a, b)
        distance = stats.wasserstein(a, b)
        level = MIN_RATE_CHANGE if sig.family == "quality" else MIN_LEVEL_CHANGE * abs(float(a.mean()))
        floor = max(MIN_SCORE_CHANGE * float(a.std()), level)
        big = distance >= floor if floor > 0 else distance > 0
        return Verdict(sig, "ok", **base, test="mann-whitney", p=t.p, effect=distance), big
    t = stats.psi(Counter(map(str, ref)), Counter(map(str, cur)))
    return Verdict(sig, "ok", **base, test="psi", p=t.p, effect=t.statistic), t.statistic >= MIN_PSI


def _direction(v: Verdict) -> str:
    """drop, drift or improved, for a move that counts."""
    sig = v.signal
    if sig.better is None or v.current is None or v.reference is None:
        return "drift"
    worse = v.current < v.reference if sig.better == "up" else v.current > v.reference
    return sig.alerts_on if worse else "improved"


def embedding_verdict(cur: np.ndarray | None, ref: np.ndarray | None, min_samples: int) -> tuple[Verdict, bool]:
    sig = signal("input_embedding")
    n = 0 if cur is None else len(cur)
    m = 0 if ref is None else len(ref)
    if m == 0 or ref is None:
        return Verdict(sig, "no reference", n=n, n_reference=m), False
    if cur is None or n < min_samples or m < min_samples:
        return Verdict(sig, "too few", n=n, n_reference=m), False
    t = stats.classifier_test(ref, cur)
    distance = max(0.0, stats.centroid_distance(ref, cur))
    v = Verdict(
        sig, "ok", current=t.statistic, reference=0.5, n=n, n_reference=m, test="classifier", p=t.p, effect=distance
    )
    return v, t.statistic >= MIN_AUC


def compare(
    current: Sample,
    reference: Sample,
    *,
    min_samples: int,
    fdr: float,
    only: Iterable[str] | None = None,
) -> list[Verdict]:
    """Every signal either window has, judged; ``only`` keeps the named ones."""
    cur, ref = current.series(), reference.series()
    names = sorted(set(cur) | set(ref))
    if only is not None:
        wanted = set(only)
        names = [n for n in names if n in wanted]
    found: list[tuple[Verdict, bool]] = []
    for name in names:
        try:
            sig = signal(name)
        except KeyError:
            continue
        found.append(_one(sig, cur.get(name, []), ref.get(name, []), min_samples))
    if current.inputs is not None or reference.inputs is not None:
        found.append(embedding_verdict(current.inputs, reference.inputs, min_samples))
    tested = [i for i, (v, _) in enumerate(found) if v.p is not None]
    adjusted = stats.adjusted([float(found[i][0].p or 1.0) for i in tested])
    out = [v for v, _ in found]
    for i, q in zip(tested, adjusted, strict=True):
        v, big = found[i]
        verdict = _direction(v) if q <= fdr and big else "ok"
        out[i] = replace(v, verdict=verdict, adjusted_p=q)
    return out


def fmt_p(p: float | None) -> str:
    """A p-value in a sentence: ``p < 0.001``, ``p = 0.021``."""
    if p is None or math.isnan(p):
        return "—"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def short_p(p: float | None) -> str:
    """A p-value in a table cell: ``<0.001``, ``0.021``."""
    if p is None or math.isnan(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


SEVERITY = {"drop": 0, "drift": 1, "improved": 2, "ok": 3, "too few": 4, "no reference": 5}


def ranked(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """Verdicts as people read them: drops first, then drift, improvements, the quiet ones."""
    return sorted(verdicts, key=lambda v: (SEVERITY.get(v.verdict, 9), v.signal.name))
