"""Running a suite: every case through the feature pipeline (a few at a time), its checks on the
result, provider failures recorded as values so the run goes on; the run and its results stored;
the gate judged against the rules and a baseline run.

A case passes when the weighted share of its checks that pass reaches the suite's ``threshold`` (1.0
by default: every check). A gate never passes an empty, errored or interrupted run.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from keel.checks import CheckContext, CheckError
from keel.errors import KeelError, UserError
from keel.evals.suite import Case, Suite
from keel.features.pipeline import FeaturePipeline
from keel.features.spec import load_feature
from keel.stats import bootstrap, percentile


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


def _context(case: Case, result: Any, inputs: dict[str, Any]) -> CheckContext:
    retrieved = list(dict.fromkeys(s.doc_id for s in result.sources))  # documents, best first, once each
    return CheckContext(
        output=result.answer,
        value=result.value,
        expected=case.expected,
        inputs=inputs,
        sources=[s.text for s in result.sources],
        retrieved_ids=retrieved,
        expected_ids=case.expected_sources,
        latency_ms=result.latency_ms,
        cost_usd=result.cost_usd,
    )


async def run_case(pipeline: FeaturePipeline, suite: Suite, case: Case) -> CaseResult:
    out = CaseResult(case.id, tags=list(case.tags))
    inputs = {**suite.spec.defaults, **case.inputs}
    try:
        result = await pipeline.run(suite.spec.feature, inputs, user=case.user or "eval", tenant="eval")
    except KeelError as exc:  # a provider that is down, a bad input: a value, and the run goes on
        out.error = f"{type(exc).__name__}: {exc.message}"
        return out
    out.output, out.latency_ms, out.cost_usd, out.trace_id = (
        result.answer,
        result.latency_ms,
        result.cost_usd,
        result.trace_id,
    )
    ctx = _context(case, result, inputs)
    for check in suite.checks[case.id]:
        try:
            verdict = check(ctx)
        except CheckError as exc:
            out.error = f"check {check.name}: {exc.message}"
            return out
        out.checks.append(CheckResult(check.name, verdict.passed, verdict.score, verdict.reason, check.weight))
    total = sum(c.weight for c in out.checks) or 1.0
    out.score = sum(c.weight * c.score for c in out.checks) / total
    out.passed = sum(c.weight for c in out.checks if c.passed) / total >= suite.spec.threshold - 1e-9
    return out


async def run_suite(
    pipeline: FeaturePipeline,
    suite: Suite,
    *,
    concurrency: int | None = None,
    progress: Callable[[CaseResult], None] | None = None,
) -> EvalRun:
    gate = asyncio.Semaphore(concurrency or suite.spec.concurrency)
    started = time.time()
    results: dict[str, CaseResult] = {}

    async def one(case: Case) -> None:
        async with gate:
            results[case.id] = await run_case(pipeline, suite, case)
        if progress is not None:
            progress(results[case.id])

    partial = False
    try:
        await asyncio.gather(*(one(c) for c in suite.spec.cases))
    except (asyncio.CancelledError, KeyboardInterrupt):
        partial = True  # Ctrl-C: keep what finished, mark the run partial
    ordered = [results[c.id] for c in suite.spec.cases if c.id in results]
    run = EvalRun(uuid.uuid4().hex[:12], suite.name, suite.spec.feature, started, ordered, summarise(ordered))
    run.summary.partial = partial or len(ordered) < len(suite.spec.cases)
    run.status = "partial" if run.summary.partial else "done"
    return run


def summarise(results: list[CaseResult]) -> RunSummary:
    s = RunSummary(cases=len(results))
    if not results:
        return s
    s.passed = sum(r.passed for r in results)
    s.errors = sum(r.error is not None for r in results)
    s.pass_rate = s.passed / len(results)
    s.mean_score = sum(r.score for r in results) / len(results)
    s.cost_usd = sum(r.cost_usd or 0.0 for r in results)
    s.unpriced = sum(r.cost_usd is None and r.error is None for r in results)
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    s.p50_ms, s.p95_ms = percentile(latencies, 50), percentile(latencies, 95)
    by_check: dict[str, list[float]] = {}
    for r in results:
        for c in r.checks:
            by_check.setdefault(c.check, []).append(c.score)
    s.check_scores = {k: sum(v) / len(v) for k, v in by_check.items()}
    return s


# -- storage -------------------------------------------------------------------------------------


def save_run(conn: sqlite3.Connection, run: EvalRun) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        summary = orjson.dumps(asdict(run.summary)).decode()
        conn.execute(
            "INSERT INTO eval_runs(id, suite, feature, started, finished, status, label, summary) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (run.id, run.suite, run.feature, run.started, time.time(), run.status, run.label, summary),
        )
        conn.executemany(
            "INSERT INTO eval_results(run_id, case_id, result) VALUES (?,?,?)",
            [(run.id, r.case_id, orjson.dumps(asdict(r)).decode()) for r in run.results],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def load_run(conn: sqlite3.Connection, suite: str, ref: str) -> EvalRun | None:
    """A run by id, or the newest complete run carrying the label ``ref`` (e.g. ``main``)."""
    row = conn.execute("SELECT * FROM eval_runs WHERE id = ? AND suite = ?", (ref, suite)).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT * FROM eval_runs WHERE suite = ? AND label = ? AND status = 'done' ORDER BY started DESC LIMIT 1",
            (suite, ref),
        ).fetchone()
    if row is None:
        return None
    stored = conn.execute("SELECT result FROM eval_results WHERE run_id = ?", (row["id"],)).fetchall()
    results = []
    for (raw,) in stored:
        data = orjson.loads(raw)
        results.append(CaseResult(**{**data, "checks": [CheckResult(**c) for c in data["checks"]]}))
    run = EvalRun(
        row["id"], row["suite"], row["feature"], row["started"], results, RunSummary(**orjson.loads(row["summary"]))
    )
    run.status, run.label = row["status"], row["label"]
    return run


# -- deltas vs a baseline --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delta:
    metric: str
    change: float  # this run − the baseline, over the cases both ran
    low: float
    high: float
    cases: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def deltas(run: EvalRun, baseline: EvalRun) -> list[Delta]:
    """Per-metric change with a 95% bootstrap interval, paired by case id (only cases both runs scored)."""
    before = {r.case_id: r for r in baseline.results if r.error is None}
    pairs = [(before[r.case_id], r) for r in run.results if r.error is None and r.case_id in before]
    if not pairs:
        return []
    metrics: dict[str, list[float]] = {
        "pass rate": [float(new.passed) - float(old.passed) for old, new in pairs],
        "mean score": [new.score - old.score for old, new in pairs],
    }
    if all(old.cost_usd is not None and new.cost_usd is not None for old, new in pairs):
        metrics["cost per case"] = [(new.cost_usd or 0.0) - (old.cost_usd or 0.0) for old, new in pairs]
    if all(old.latency_ms is not None and new.latency_ms is not None for old, new in pairs):
        metrics["latency ms"] = [(new.latency_ms or 0.0) - (old.latency_ms or 0.0) for old, new in pairs]
    out = []
    for metric, diffs in metrics.items():
        interval = bootstrap(diffs, seed=f"{run.suite}:{metric}")
        if interval is not None:
            out.append(Delta(metric, interval.value, interval.low, interval.high, len(pairs)))
    return out


# -- the gate ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    passed: bool
    detail: str


def judge(suite: Suite, run: EvalRun, baseline: EvalRun | None) -> list[Rule]:
    g, s = suite.spec.gate, run.summary
    rules: list[Rule] = []
    if s.cases == 0:
        return [Rule("not empty", False, "the run has no results")]
    if s.partial:
        rules.append(Rule("complete", False, f"interrupted: {s.cases} of {len(suite.spec.cases)} cases ran"))
    rules.append(Rule("errors", s.errors <= g.max_errors, f"{s.errors} case(s) errored (allowed {g.max_errors})"))
    if g.min_pass_rate is not None:
        rules.append(Rule("pass rate", s.pass_rate >= g.min_pass_rate, f"{s.pass_rate:.1%} (≥ {g.min_pass_rate:.1%})"))
    if g.min_mean_score is not None:
        rules.append(Rule("mean score", s.mean_score >= g.min_mean_score, f"{s.mean_score:.3f} (≥ {g.min_mean_score})"))
    for check, floor in g.min_check_score.items():
        got = s.check_scores.get(check)
        rules.append(
            Rule(f"{check} score", got is not None and got >= floor, f"{got if got is not None else '—'} (≥ {floor})")
        )
    if g.max_p95_latency_ms is not None:
        ok = s.p95_ms is not None and s.p95_ms <= g.max_p95_latency_ms
        rules.append(Rule("p95 latency", ok, f"{s.p95_ms or 0:.0f} ms (≤ {g.max_p95_latency_ms:g})"))
    if baseline is not None:
        b = baseline.summary
        if g.max_pass_rate_drop is not None:
            drop = b.pass_rate - s.pass_rate
            detail = f"{s.pass_rate:.1%} vs {b.pass_rate:.1%} (may drop ≤ {g.max_pass_rate_drop:.1%})"
            rules.append(Rule("pass rate vs baseline", drop <= g.max_pass_rate_drop + 1e-9, detail))
        if g.max_cost_increase is not None and b.cost_usd > 0:
            rise = s.cost_usd / b.cost_usd - 1
            detail = f"{rise:+.1%} (may rise ≤ {g.max_cost_increase:.0%})"
            rules.append(Rule("cost vs baseline", rise <= g.max_cost_increase + 1e-9, detail))
    elif g.max_pass_rate_drop is not None or g.max_cost_increase is not None:
        rules.append(Rule("baseline", True, "no baseline run yet: comparisons skipped (save one with --label main)"))
    return rules


def require_feature(pipeline: FeaturePipeline, suite: Suite) -> None:
    try:
        load_feature(pipeline.root, suite.spec.feature)
    except UserError as exc:
        raise UserError(f"{suite.path}: feature: {exc.message}") from None
