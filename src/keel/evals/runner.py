"""Running a suite: every case through the feature pipeline (a few at a time), its checks on the
result, provider failures recorded as values so the run goes on; the run and its results stored;
the gate judged against the rules and a baseline run.

A case passes when the weighted share of its checks that pass reaches the suite's ``threshold`` (1.0
by default: every check). A gate never passes an empty, errored or interrupted run.

Results are cached by what produced them — the case and its checks, the feature spec, the prompt
version, the model (and the deployments behind it) and the retrieval index version — so a re-run
pays only for what changed. Judge calls (``llm-rubric``, ``grounded`` by judge) go through the
gateway, are traced as children of the case's feature run, and count in the run's cost.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from keel.checks import CheckContext
from keel.cost.prices import total_cost
from keel.errors import KeelError, UserError
from keel.evals.suite import Case, Suite
from keel.features.pipeline import FeaturePipeline, Resolved
from keel.features.spec import load_feature
from keel.stats import bootstrap, percentile
from keel.store.evals import EvalStore
from keel.store.keys import DEFAULT_TENANT
from keel.types import CallContext, ChatRequest


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


@dataclass(frozen=True, slots=True)
class Variant:
    """What a matrix run pins: a prompt version and/or a model (None: the label and spec decide)."""

    prompt_version: int | None = None
    model: str | None = None

    @property
    def name(self) -> str | None:
        parts = [f"v{self.prompt_version}" if self.prompt_version is not None else "", self.model or ""]
        return " · ".join(p for p in parts if p) or None


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


class _JudgeCalls:
    """The judge the runner gives checks: a gateway call, traced under the case's feature run, its
    cost counted."""

    def __init__(self, pipeline: FeaturePipeline, suite: Suite, parent: str | None, tenant: str) -> None:
        self.pipeline, self.suite, self.parent, self.tenant = pipeline, suite, parent, tenant
        self.costs: list[float | None] = []

    async def __call__(
        self,
        messages: list[dict[str, str]],
        *,
        schema: dict[str, Any],
        model: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 256,
    ) -> str:
        call = CallContext(tenant=self.tenant, user="eval-judge", feature=f"eval:{self.suite.name}", parent=self.parent)
        settings = self.pipeline.service.gateway.settings
        request = ChatRequest(
            model=model or self.suite.spec.judge_model or settings.default_model or "local",
            messages=list(messages),
            max_tokens=max_tokens,
            params={
                "temperature": temperature,
                "response_format": {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}},
            },
            ctx=call,
        )
        try:
            response = await self.pipeline.service.chat(request)
        finally:
            self.costs.append(call.record.cost_usd if call.record is not None else None)
        return response.text

    @property
    def cost(self) -> float | None:
        return total_cost(self.costs)


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


def cache_key(pipeline: FeaturePipeline, suite: Suite, case: Case, inputs: dict[str, Any], found: Resolved) -> str:
    checks = [*suite.spec.checks, *case.checks]
    part = {
        "case": {**case.model_dump(mode="json", exclude={"checks", "tags"}), "inputs": inputs},
        "checks": checks,
        "threshold": suite.spec.threshold,
        "judge": suite.spec.judge_model,
        "feature": found.spec.model_dump(mode="json"),
        "prompt": [found.spec.prompt, found.prompt_version],
        "model": _model_identity(pipeline, found.model),
        "judge_model": _model_identity(pipeline, suite.spec.judge_model) if suite.spec.judge_model else None,
        "index": found.index_version,
    }
    return hashlib.sha256(orjson.dumps(part, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


def _model_identity(pipeline: FeaturePipeline, model: str) -> Any:
    """The deployments behind a model name: a changed upstream model is a changed result."""
    settings = pipeline.service.gateway.settings
    try:
        names = pipeline.service.gateway.route(model).settings.deployments
    except KeelError:
        return model
    found = [settings.deployments.get(n) for n in names]
    return [
        model,
        *[(d.provider, d.model, d.base_url) if d is not None else n for n, d in zip(names, found, strict=True)],
    ]


async def run_case(
    pipeline: FeaturePipeline,
    suite: Suite,
    case: Case,
    variant: Variant | None = None,
    *,
    cache: ResultCache | None = None,
    tenant: str = DEFAULT_TENANT,
) -> CaseResult:
    """One case, run as ``tenant`` (its collections, experiments and budgets); eval traffic is told
    apart by its user ("eval", or the case's) and the judge's feature (``eval:<suite>``)."""
    variant = variant or Variant()
    out = CaseResult(case.id, tags=list(case.tags))
    inputs = {**suite.spec.defaults, **case.inputs}
    user = case.user or "eval"
    pins: dict[str, Any] = {"version": variant.prompt_version, "model": variant.model}
    key = None
    try:
        if cache is not None:
            key = cache_key(
                pipeline,
                suite,
                case,
                inputs,
                pipeline.resolve(suite.spec.feature, inputs, user=user, tenant=tenant, **pins),
            )
            hit = cache.get(key)
            if hit is not None:
                hit.cached, hit.tags = True, list(case.tags)
                return hit
        result = await pipeline.run(suite.spec.feature, inputs, user=user, tenant=tenant, **pins)
    except KeelError as exc:  # a provider that is down, a bad input: a value, and the run goes on
        out.error = f"{type(exc).__name__}: {exc.message}"
        return out
    out.output, out.latency_ms, out.cost_usd, out.trace_id = (
        result.answer,
        result.latency_ms,
        result.cost_usd,
        result.trace_id,
    )
    out.prompt_version, out.model = result.prompt_version, result.model
    ctx = _context(case, result, inputs)
    judge = _JudgeCalls(pipeline, suite, result.trace_id, tenant)
    ctx.judge = judge
    ctx.embed = pipeline.collections.embed if pipeline.collections is not None else None
    try:
        for check in suite.checks[case.id]:
            try:
                verdict = await check.evaluate(ctx)
            except KeelError as exc:  # misconfigured for this case, a judge that is down or talks nonsense
                out.error = f"check {check.name}: {exc.message}"
                return out
            out.checks.append(CheckResult(check.name, verdict.passed, verdict.score, verdict.reason, check.weight))
    finally:
        out.judge_cost_usd, out.judge_calls = judge.cost, len(judge.costs)
    total = sum(c.weight for c in out.checks) or 1.0
    out.score = sum(c.weight * c.score for c in out.checks) / total
    out.passed = sum(c.weight for c in out.checks if c.passed) / total >= suite.spec.threshold - 1e-9
    if cache is not None and key is not None:
        cache.put(key, suite.name, out)
    return out


async def run_suite(
    pipeline: FeaturePipeline,
    suite: Suite,
    *,
    concurrency: int | None = None,
    progress: Callable[[CaseResult], None] | None = None,
    variant: Variant | None = None,
    cache: ResultCache | None = None,
    tenant: str = DEFAULT_TENANT,
) -> EvalRun:
    gate = asyncio.Semaphore(concurrency or suite.spec.concurrency)
    started = time.time()
    results: dict[str, CaseResult] = {}

    async def one(case: Case) -> None:
        async with gate:
            results[case.id] = await run_case(pipeline, suite, case, variant, cache=cache, tenant=tenant)
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
    run.summary.variant = variant.name if variant is not None else None
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


# -- storage -------------------------------------------------------------------------------------


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


def _case_from_json(raw: str | bytes) -> CaseResult:
    data = orjson.loads(raw)
    return CaseResult(**{**data, "checks": [CheckResult(**c) for c in data["checks"]]})


# -- deltas vs a baseline --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricDelta:
    metric: str
    change: float  # this run − the baseline, over the cases both ran
    low: float
    high: float
    cases: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def deltas(run: EvalRun, baseline: EvalRun) -> list[MetricDelta]:
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
            out.append(MetricDelta(metric, interval.value, interval.low, interval.high, len(pairs)))
    return out


# -- the gate ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    passed: bool
    detail: str


def apply_gate(suite: Suite, run: EvalRun, baseline: EvalRun | None) -> list[Rule]:
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


@dataclass(frozen=True, slots=True)
class Outcome:
    """A run judged: the gate's rules and its changes against the baseline."""

    run: EvalRun
    rules: list[Rule]
    deltas: list[MetricDelta]


def compare(outcomes: list[Outcome]) -> list[list[MetricDelta]]:
    """Each run of a matrix against the first, paired by case (the first compares with nothing)."""
    if not outcomes:
        return []
    first = outcomes[0].run
    return [[], *(deltas(o.run, first) for o in outcomes[1:])]


def require_feature(pipeline: FeaturePipeline, suite: Suite, tenant: str = DEFAULT_TENANT) -> None:
    """Before any call: the feature exists, and every expected source is a document its collection
    holds (a typo there would score every retrieval check 0 and look like a regression)."""
    try:
        spec = load_feature(pipeline.root, suite.spec.feature)
    except UserError as exc:
        raise UserError(f"{suite.path}: feature: {exc.message}") from None
    wanted = {(c.id, d) for c in suite.spec.cases for d in c.expected_sources}
    if not wanted or spec.retrieval is None or pipeline.collections is None:
        return
    try:
        held = pipeline.collections.get(spec.retrieval.collection, tenant=tenant).document_ids()
    except UserError:
        return  # the run reports the missing collection, precisely, per case
    unknown = sorted((case, doc) for case, doc in wanted if doc not in held)
    if unknown:
        case, doc = unknown[0]
        close = difflib.get_close_matches(doc, held, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        more = f"; and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise UserError(
            f"{suite.path}: case '{case}': expected source '{doc}' is not a document of collection "
            f"'{spec.retrieval.collection}'{hint}{more}"
        )
