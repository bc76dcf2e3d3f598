"""Eval results and where they are kept: case results, the run's summary, runs saved and loaded by
id or label, and the result cache (case results keyed by everything that produced them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import orjson

from keel.errors import KeelError
from keel.stats import percentile
from keel.store.evals import EvalStore
from keel.store.keys import DEFAULT_TENANT


@dataclass(slots=True)
class CheckResult:
    check: str
    passed: bool
    score: float
    reason: str
    weight: float = 1.0


@dataclass(slots=True)
class CaseResult:
    case_id: str
    passed: bool = False
    score: float = 0.0
    output: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    latency_ms: float | None = None
    cost_usd: float | None = None
    trace_id: str | None = None
    error: str | None = None
    tags: list[str] = field(default_factory=list)
    prompt_version: int | None = None
    model: str | None = None
    judge_cost_usd: float | None = 0.0  # what the checks' model calls cost (None: some were unpriced)
    judge_calls: int = 0
    cached: bool = False  # replayed from an earlier run: nothing was paid for it this time


@dataclass(slots=True)
class RunSummary:
    cases: int = 0
    passed: int = 0
    errors: int = 0
    pass_rate: float = 0.0
    mean_score: float = 0.0
    cost_usd: float = 0.0
    unpriced: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    check_scores: dict[str, float] = field(default_factory=dict)
    partial: bool = False
    judge_cost_usd: float = 0.0
    judge_calls: int = 0
    cached: int = 0
    spent_usd: float = 0.0  # what this run paid: features and judges of the cases not replayed from the cache
    variant: str | None = None


@dataclass(slots=True)
class EvalRun:
    id: str
    suite: str
    feature: str
    started: float
    results: list[CaseResult]
    summary: RunSummary
    status: str = "done"  # done | partial
    label: str | None = None


def summarise(results: list[CaseResult]) -> RunSummary:
    s = RunSummary(cases=len(results))
    if not results:
        return s
    s.passed = sum(r.passed for r in results)
    s.errors = sum(r.error is not None for r in results)
    s.pass_rate = s.passed / len(results)
    s.mean_score = sum(r.score for r in results) / len(results)
    s.cost_usd = sum(r.cost_usd or 0.0 for r in results)
    s.unpriced = sum((r.cost_usd is None or r.judge_cost_usd is None) and r.error is None for r in results)
    s.judge_cost_usd = sum(r.judge_cost_usd or 0.0 for r in results)
    s.judge_calls = sum(r.judge_calls for r in results)
    s.cached = sum(r.cached for r in results)
    s.spent_usd = sum((r.cost_usd or 0.0) + (r.judge_cost_usd or 0.0) for r in results if not r.cached)
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    s.p50_ms, s.p95_ms = percentile(latencies, 50), percentile(latencies, 95)
    by_check: dict[str, list[float]] = {}
    for r in results:
        for c in r.checks:
            by_check.setdefault(c.check, []).append(c.score)
    s.check_scores = {k: sum(v) / len(v) for k, v in by_check.items()}
    return s


class ResultCache:
    """Case results keyed by everything that produced them; errors are never cached."""

    def __init__(self, store: EvalStore, tenant: str = DEFAULT_TENANT) -> None:
        self.store = store
        self.tenant = tenant

    def get(self, key: str) -> CaseResult | None:
        raw = self.store.cached(self.tenant, key)
        if raw is None:
            return None
        try:
            return _case_from_json(raw)
        except (TypeError, ValueError, KeyError):
            return None  # written by an older Keel: run the case again

    def put(self, key: str, suite: str, result: CaseResult) -> None:
        self.store.cache(self.tenant, key, suite, result.case_id, orjson.dumps(asdict(result)).decode())

    def clear(self, suite: str) -> int:
        return self.store.clear_cache(self.tenant, suite)


def save_run(store: EvalStore, run: EvalRun, tenant: str = DEFAULT_TENANT) -> None:
    row = {
        "id": run.id,
        "suite": run.suite,
        "feature": run.feature,
        "started": run.started,
        "status": run.status,
        "label": run.label,
        "summary": orjson.dumps(asdict(run.summary)).decode(),
    }
    store.save_run(tenant, row, [(r.case_id, orjson.dumps(asdict(r)).decode()) for r in run.results])


def load_run(store: EvalStore, suite: str, ref: str, tenant: str = DEFAULT_TENANT) -> EvalRun | None:
    """A run by id, or the newest complete run carrying the label ``ref`` (e.g. ``main``)."""
    found = store.load_run(tenant, suite, ref)
    if found is None:
        return None
    row, stored = found
    results = [_case_from_json(raw) for raw in stored]
    run = EvalRun(
        row["id"], row["suite"], row["feature"], row["started"], results, RunSummary(**orjson.loads(row["summary"]))
    )
    run.status, run.label = row["status"], row["label"]
    return run


def baseline_run(store: EvalStore, suite: str, ref: str | None, tenant: str = DEFAULT_TENANT) -> EvalRun | None:
    """The run a new one is compared with (None when no ``ref`` was asked); a ``ref`` that names
    no run is an error saying how to make one."""
    if not ref:
        return None
    found = load_run(store, suite, ref, tenant)
    if found is None:
        raise KeelError(f"no baseline run '{ref}' for suite '{suite}' (label a run with --label)")
    return found


def _case_from_json(raw: str | bytes) -> CaseResult:
    data = orjson.loads(raw)
    return CaseResult(**{**data, "checks": [CheckResult(**c) for c in data["checks"]]})
