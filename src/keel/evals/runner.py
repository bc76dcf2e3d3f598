"""Running a suite: every case through the feature pipeline (a few at a time), its checks on the
result, provider failures recorded as values so the run goes on. The results and their store are
``keel.evals.results``; the gate against the rules and a baseline run is ``keel.evals.gate``.

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
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from keel.checks import CheckContext
from keel.config.settings import BudgetSettings
from keel.cost.prices import total_cost
from keel.errors import KeelError, UserError
from keel.evals.gate import MetricDelta, Outcome, Rule, apply_gate, compare, deltas
from keel.evals.results import (
    CaseResult,
    CheckResult,
    EvalRun,
    ResultCache,
    RunSummary,
    load_run,
    save_run,
    summarise,
)
from keel.evals.suite import Case, Suite
from keel.features.pipeline import FeaturePipeline, Resolved
from keel.features.spec import load_feature
from keel.store.keys import DEFAULT_TENANT
from keel.tracing.tracer import CURRENT_ROOT, SpanData
from keel.types import CallContext, ChatRequest

__all__ = [  # the runner, and what callers have imported from here (results and the gate)
    "CaseResult",
    "CheckResult",
    "EvalRun",
    "MetricDelta",
    "Outcome",
    "ResultCache",
    "Rule",
    "RunSummary",
    "Variant",
    "apply_gate",
    "check_result",
    "compare",
    "deltas",
    "load_run",
    "require_feature",
    "run_case",
    "run_suite",
    "save_run",
    "summarise",
]

log = logging.getLogger("keel.evals")


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


class JudgeCalls:
    """The judge checks are given: a gateway call, traced under the run it judges (``parent``), its
    cost counted, under ``feature`` (``eval:<suite>``, ``monitor:<feature>:<monitor>``) and any
    ``budgets`` of its own (a monitor's daily judge budget)."""

    def __init__(
        self,
        pipeline: FeaturePipeline,
        *,
        feature: str,
        model: str | None,
        parent: str | None,
        tenant: str,
        user: str = "eval-judge",
        budgets: dict[str, BudgetSettings] | None = None,
    ) -> None:
        self.pipeline, self.feature, self.model, self.parent, self.tenant = pipeline, feature, model, parent, tenant
        self.user, self.budgets = user, budgets or {}
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
        call = CallContext(tenant=self.tenant, user=self.user, feature=self.feature, parent=self.parent)
        call.budgets = self.budgets
        settings = self.pipeline.service.gateway.settings
        request = ChatRequest(
            model=model or self.model or settings.default_model or "local",
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
    await check_result(pipeline, suite, case, result, out, tenant=tenant)
    if cache is not None and key is not None and out.error is None:
        cache.put(key, suite.name, out)
    return out


async def check_result(
    pipeline: FeaturePipeline, suite: Suite, case: Case, result: Any, out: CaseResult, *, tenant: str = DEFAULT_TENANT
) -> CaseResult:
    """Score a finished run of ``case`` with the suite's checks (what ``run_case`` does after the
    run; a review bench scripts its reviewer with it)."""
    inputs = {**suite.spec.defaults, **case.inputs}
    out.output, out.latency_ms, out.cost_usd, out.trace_id = (
        result.answer,
        result.latency_ms,
        result.cost_usd,
        result.trace_id,
    )
    out.prompt_version, out.model = result.prompt_version, result.model
    ctx = _context(case, result, inputs)
    judge = JudgeCalls(
        pipeline, feature=f"eval:{suite.name}", model=suite.spec.judge_model, parent=result.trace_id, tenant=tenant
    )
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
    _score(out, suite.spec.threshold)
    return out


def _score(out: CaseResult, threshold: float) -> None:
    """The weighted mean of the checks' scores; passed when the weighted share that passed reaches
    the suite's threshold."""
    total = sum(c.weight for c in out.checks) or 1.0
    out.score = sum(c.weight * c.score for c in out.checks) / total
    out.passed = sum(c.weight for c in out.checks if c.passed) / total >= threshold - 1e-9


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
    started, started_ns = time.time(), time.time_ns()
    results: dict[str, CaseResult] = {}
    run_id = uuid.uuid4().hex[:12]
    outer = CURRENT_ROOT.set(run_id)  # every case's feature run, calls and judges nest under the run's span

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
    finally:
        CURRENT_ROOT.reset(outer)
    ordered = [results[c.id] for c in suite.spec.cases if c.id in results]
    run = EvalRun(run_id, suite.name, suite.spec.feature, started, ordered, summarise(ordered))
    run.summary.partial = partial or len(ordered) < len(suite.spec.cases)
    run.summary.variant = variant.name if variant is not None else None
    run.status = "partial" if run.summary.partial else "done"
    _emit(pipeline, run, started_ns)
    return run


def _emit(pipeline: FeaturePipeline, run: EvalRun, started_ns: int) -> None:
    """The run as the root span of its cases' feature runs (tracing never fails a run)."""
    s = run.summary
    attrs = {
        "keel.eval.suite": run.suite,
        "keel.eval.run_id": run.id,
        "keel.feature": run.feature,
        "keel.eval.cases": s.cases,
        "keel.eval.passed": s.passed,
        "keel.eval.pass_rate": s.pass_rate,
        "keel.eval.mean_score": s.mean_score,
        "keel.eval.variant": s.variant,
        "keel.status": run.status,
    }
    span = SpanData(f"eval {run.suite}", run.id, run.id, None, started_ns, time.time_ns(), attrs, "internal")
    try:
        pipeline.service.tracer.emit(span)
    except Exception:
        log.exception("could not emit the span of eval run %s", run.id)


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
