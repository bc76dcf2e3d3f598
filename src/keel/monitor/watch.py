"""One feature's monitors at a moment: the current window and its reference read from the store,
compared signal by signal, with the change points inside the window (a prompt version, model or
index version that began serving, a label moved) and the health of each evaluator — errors and
budget stops are shown as such, never as a drop in quality.

A feature with no ``monitors:`` still has its judge-free signals watched, over the default window
(1 day against the 7 before it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keel.config.settings import KeelSettings
from keel.errors import FeatureNotFound
from keel.evals.results import load_run
from keel.features.monitoring import MonitorSpec
from keel.features.spec import FeatureSpec, load_feature
from keel.monitor.compare import Sample, Verdict, compare, fmt_p, summary
from keel.store import Store
from keel.store.monitors import MonitorRun, Score

DEFAULT = MonitorSpec()
DEFAULT_NAME = "signals"  # the judge-free watch a feature without monitors still gets
GATEWAY = "gateway:"  # the feature name raw gateway traffic is kept under, per keel.yaml monitor


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # prompt | model | index | label
    value: str
    at: float

    def describe(self) -> str:
        when = dt.datetime.fromtimestamp(self.at, dt.UTC).strftime("%Y-%m-%d %H:%M")
        if self.kind == "label":
            return f"{self.value} at {when} UTC"
        return f"{self.kind} {self.value} began serving at {when} UTC"


@dataclass(slots=True)
class Evaluator:
    check: str
    ok: int = 0
    errors: int = 0
    skipped: int = 0
    last_error: str | None = None

    @property
    def failing(self) -> bool:
        """Every attempt in the window errored: an evaluator failure, not a quality drop."""
        return self.errors > 0 and self.ok == 0


@dataclass(slots=True)
class Status:
    feature: str
    monitor: str
    spec: MonitorSpec
    window: tuple[float, float]
    reference: str  # what it is, in words
    verdicts: list[Verdict] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    evaluators: list[Evaluator] = field(default_factory=list)
    spent_today: float = 0.0
    notes: list[str] = field(default_factory=list)
    groups: dict[str, list[tuple[str, float | None, int]]] = field(default_factory=dict)

    @property
    def alarms(self) -> list[Verdict]:
        wanted = set(self.spec.alert.on)
        return [v for v in self.verdicts if v.alarming and v.verdict in wanted]

    def message(self, v: Verdict) -> str:
        """What an alert says: the move, its test, and what changed in the window."""
        return alert_message(self, v)


def monitors_of(spec: FeatureSpec) -> dict[str, MonitorSpec]:
    return spec.monitors or {DEFAULT_NAME: DEFAULT}


def load_sample(
    store: Store, tenant: str, feature: str, since: float, until: float, monitor: str, *, inputs: bool = True
) -> Sample:
    runs = store.monitors.runs(tenant, feature, since, until)
    scores = store.monitors.scores(tenant, feature, since, until, monitor=monitor)
    vectors = store.monitors.inputs(tenant, feature, since, until) if inputs else []
    matrix = np.vstack([np.frombuffer(v, dtype=np.float16).astype(np.float32) for v in vectors]) if vectors else None
    return Sample(runs, scores, store.monitors.feedback(tenant, feature, since, until), matrix)


def eval_sample(store: Store, tenant: str, spec: FeatureSpec, label: str) -> Sample | None:
    """A labelled eval run as a reference: its cases' checks, latency, cost and answer length."""
    suite = Path(spec.evals).stem if spec.evals else spec.name
    found = load_run(store.evals, suite, label, tenant)
    if found is None:
        return None
    runs, scores = [], []
    for case in found.results:
        if case.error is not None:
            continue
        values: dict[str, Any] = {"answer_chars": len(case.output), "latency_ms": case.latency_ms}
        if case.cost_usd is not None:
            values["cost_usd"] = case.cost_usd
        runs.append(MonitorRun(tenant, case.case_id, spec.name, found.started, values, case.prompt_version, case.model))
        for check in case.checks:
            scores.append(
                Score(tenant, case.case_id, "", check.check, spec.name, found.started, "ok", check.check, "eval case",
                      passed=check.passed, score=check.score)
            )  # fmt: skip
    return Sample(runs, scores)


def feature_status(
    store: Store, root: Path, tenant: str, feature: str, now: float, settings: KeelSettings | None = None
) -> list[Status]:
    """Each of the feature's monitors, compared now; ``gateway:<name>`` is keel.yaml's monitor of
    raw gateway traffic of that name."""
    if feature.startswith(GATEWAY):
        name = feature.removeprefix(GATEWAY)
        found = (settings.monitors if settings is not None else {}).get(name)
        if found is None:
            raise FeatureNotFound(f"no gateway monitor '{name[:80]}' in keel.yaml")
        watch = MonitorSpec(sample=0, window=found.window, reference=found.reference, alert=found.alert)
        return [monitor_status(store, FeatureSpec(name=feature, prompt=""), name, watch, tenant, now)]
    spec = load_feature(root, feature)
    return [monitor_status(store, spec, name, watch, tenant, now) for name, watch in monitors_of(spec).items()]


def monitor_status(store: Store, spec: FeatureSpec, name: str, watch: MonitorSpec, tenant: str, now: float) -> Status:
    start = now - watch.window_s
    ref = watch.ref
    status = Status(spec.name, name, watch, (start, now), ref.describe())
    current = load_sample(store, tenant, spec.name, start, now, name)
    if ref.kind == "eval-run":
        reference = eval_sample(store, tenant, spec, ref.label)
        if reference is None:
            status.notes.append(f"no eval run '{ref.label}' for this feature: nothing to compare with")
            reference = Sample()
        earlier: list[MonitorRun] = []
    else:
        lo, hi = (start - ref.seconds, start) if ref.kind == "span" else (ref.start, ref.end)
        reference = load_sample(store, tenant, spec.name, lo, hi, name)
        earlier = reference.runs
    if not reference.runs:
        status.notes.append(f"the reference ({status.reference}) has no runs: no verdicts until it does")
    status.verdicts = compare(current, reference, min_samples=watch.alert.min_samples, fdr=watch.alert.fdr)
    moves = label_moves(store, spec.prompt, tenant, start, now) if spec.prompt else []
    changes = change_points(earlier, current.runs) + moves
    status.changes = sorted(changes, key=lambda c: c.at)
    status.evaluators = evaluators(watch, current.scores)
    status.spent_today = store.monitors.spent(tenant, spec.name, name, _midnight(now))
    for v in status.alarms:
        status.groups[v.signal.name] = breakdown(current, v)
    return status


def _midnight(now: float) -> float:
    day = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()


def evaluators(watch: MonitorSpec, scores: list[Score]) -> list[Evaluator]:
    found = {check.name: Evaluator(check.name) for check in watch.bound_checks()}
    for s in scores:
        e = found.setdefault(s.check, Evaluator(s.check))
        if s.status == "ok":
            e.ok += 1
        elif s.status == "error":
            e.errors += 1
            e.last_error = s.reason
        else:
            e.skipped += 1
    return list(found.values())


def _dims(run: MonitorRun) -> dict[str, str]:
    return {
        "prompt": "—" if run.prompt_version is None else f"v{run.prompt_version}",
        "model": run.model or "—",
        "index": (run.index_version or "—")[:8],
    }


def change_points(reference: list[MonitorRun], current: list[MonitorRun]) -> list[Change]:
    """What began serving inside the window: a prompt version, model or index version the reference
    never saw, at the first run that had it."""
    seen = {kind: {_dims(r)[kind] for r in reference} for kind in ("prompt", "model", "index")}
    out: list[Change] = []
    for run in current:
        for kind, value in _dims(run).items():
            if value != "—" and value not in seen[kind]:
                seen[kind].add(value)
                if reference:  # with no reference, everything is new: say nothing
                    out.append(Change(kind, value, run.ts))
    return out


def label_moves(store: Store, prompt: str, tenant: str, since: float, until: float) -> list[Change]:
    out = []
    for move in store.prompts.moves(prompt):
        if since <= float(move["at"]) < until and move.get("tenant") in (None, tenant):
            text = f"prompt v{move['to_version']} became {move['label']}"
            out.append(Change("label", text, float(move["at"])))
    return out


def breakdown(current: Sample, v: Verdict) -> list[tuple[str, float | None, int]]:
    """The signal's value in the window per (prompt version, model, index version) that served it."""
    per: dict[tuple[str, ...], list[Any]] = {}
    dims_of = {r.trace_id: _dims(r) for r in current.runs}
    varying = [k for k in ("prompt", "model", "index") if len({d[k] for d in dims_of.values()}) > 1]
    if not varying:
        return []
    name = v.signal.name
    if name.startswith("check:"):
        pairs = [(s.trace_id, s.passed) for s in current.scores if s.check == name[6:] and s.status == "ok"]
    else:
        pairs = [(r.trace_id, r.values[name]) for r in current.runs if name in r.values]
    for trace_id, value in pairs:
        dims = dims_of.get(trace_id)
        if dims is not None:
            per.setdefault(tuple(f"{k} {dims[k]}" if k != "prompt" else dims[k] for k in varying), []).append(value)
    return sorted(
        ((" · ".join(key), summary(values, v.signal.kind), len(values)) for key, values in per.items()),
        key=lambda row: row[0],
    )


def _value(v: float | None, kind: str) -> str:
    if v is None:
        return "—"
    return f"{v:.2f}" if kind in ("rate", "category") else f"{v:.3g}"


def alert_message(status: Status, v: Verdict) -> str:
    sig = v.signal
    head = f"{status.feature}: {sig.label} {_value(v.reference, sig.kind)} → {_value(v.current, sig.kind)}"
    if sig.kind == "rate" and v.effect is not None:
        head += f" ({v.effect * 100:+.0f} pts, {fmt_p(v.adjusted_p)}, n = {v.n})".replace("-", "−")
    elif v.test == "classifier":
        head = (f"{status.feature}: inputs moved (a classifier tells them from the reference's at AUC "
                f"{v.current:.2f}; centroid distance {v.effect:.3g}; {fmt_p(v.adjusted_p)}, n = {v.n})")  # fmt: skip
    elif v.test == "psi":
        head += f" (PSI {v.effect:.2f}, {fmt_p(v.adjusted_p)}, n = {v.n})"
    else:
        head += f" (Wasserstein {v.effect:.3g}, {fmt_p(v.adjusted_p)}, n = {v.n})"
    if status.changes:
        head += " since " + "; ".join(c.describe() for c in status.changes[:3])
    groups = status.groups.get(sig.name) or []
    if len(groups) > 1:
        head += "; in the window: " + ", ".join(f"{g} {_value(val, sig.kind)} (n = {n})" for g, val, n in groups)
    return head
