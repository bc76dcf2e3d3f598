"""The ``monitor`` job: a sampled live run scored by its monitor's checks, off the request path.

Each check gives one row, stored like an eval result (passed, score, reason), saying why the run
was sampled and which evaluator ran. A check that raises is an *error* row — shown in
``keel monitor status`` and on the Drift page as a failing evaluator, never silence and never a
drop in quality. Judges are gateway calls under the monitor's own daily budget (reserved before
each call like any budget, so concurrent workers cannot jointly overspend it); once it is spent,
judged checks write *skipped* rows that say so, and cheap checks go on. The run's input is
embedded too, for input drift.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from keel.checks import CheckContext
from keel.config.settings import BudgetSettings
from keel.errors import BudgetExceeded, FeatureNotFound, KeelError
from keel.evals.runner import JudgeCalls
from keel.features.monitoring import KIND, MonitorSpec
from keel.features.pipeline import FeaturePipeline
from keel.features.spec import load_feature
from keel.store.jobs import Job
from keel.store.monitors import Score

__all__ = ["KIND", "judge_feature", "monitor_work", "score_run"]


def judge_feature(feature: str, monitor: str) -> str:
    """What a monitor's judge calls are traced and budgeted under."""
    return f"monitor:{feature}:{monitor}"


def _budget(feature: str, monitor: str, watch: MonitorSpec) -> dict[str, BudgetSettings]:
    if watch.budget_usd_day <= 0:
        return {}
    daily = BudgetSettings(match={"feature": judge_feature(feature, monitor)}, period="day", usd=watch.budget_usd_day)
    return {f"monitor.{feature}.{monitor}": daily}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(str(v) for v in value.values() if isinstance(v, str | int | float))
    return "" if value is None else str(value)


async def score_run(pipeline: FeaturePipeline, tenant: str, feature: str, body: dict[str, Any]) -> list[Score]:
    """The sampled run's scores (also written to the store), and its input's embedding."""
    spec = load_feature(pipeline.root, feature)
    name = str(body["monitor"])
    watch = spec.monitors.get(name)
    if watch is None:
        return []  # the monitor was removed since the run was sampled: nothing asks for these scores
    ctx = CheckContext(
        output=_text(body.get("answer")),
        value=body.get("value"),
        inputs=body.get("inputs") or {},
        sources=list(body.get("sources") or []),
        latency_ms=body.get("latency_ms"),
        cost_usd=body.get("cost_usd"),
    )
    embed = pipeline.collections.embed if pipeline.collections is not None else None
    ctx.embed = embed
    trace_id = str(body["trace_id"])
    base: dict[str, Any] = {
        "tenant": tenant, "trace_id": trace_id, "monitor": name, "feature": feature,
        "ts": float(body.get("ts") or 0.0), "why": str(body.get("why") or "sampled"),
        "prompt_version": body.get("prompt_version"), "model": body.get("model"),
        "index_version": body.get("index_version"),
    }  # fmt: skip
    scores: list[Score] = []
    for check, raw in zip(watch.bound_checks(), watch.checks, strict=True):
        evaluator = raw if isinstance(raw, str) else str(raw.get("type"))
        if check.requires_llm and watch.budget_usd_day <= 0:
            scores.append(Score(**base, check=check.name, status="skipped", evaluator=evaluator,
                                reason="budget_usd_day is 0: judged checks are off"))  # fmt: skip
            continue
        judge = JudgeCalls(
            pipeline, feature=judge_feature(feature, name), model=watch.judge_model, parent=trace_id,
            tenant=tenant, user="monitor-judge", budgets=_budget(feature, name, watch),
        )  # fmt: skip
        ctx.judge = judge
        try:
            verdict = await check.evaluate(ctx)
        except BudgetExceeded:
            tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
            why = f"judge budget spent (${watch.budget_usd_day:g} a day): judged checks resume {tomorrow} 00:00 UTC"
            scores.append(Score(**base, check=check.name, status="skipped", evaluator=evaluator, reason=why,
                                cost_usd=judge.cost))  # fmt: skip
            continue
        except Exception as exc:  # an evaluator that fails is an error row, never silence
            message = exc.message if isinstance(exc, KeelError) else str(exc)
            scores.append(Score(**base, check=check.name, status="error", evaluator=evaluator,
                                reason=f"{type(exc).__name__}: {message[:500]}", cost_usd=judge.cost))  # fmt: skip
            continue
        scores.append(Score(**base, check=check.name, status="ok", evaluator=evaluator, passed=verdict.passed,
                            score=verdict.score, reason=verdict.reason[:1000], cost_usd=judge.cost))  # fmt: skip
    store = pipeline.store
    if scores:
        store.monitors.add_scores(scores)
    text = _text(body.get("inputs") or {})
    if embed is not None and text:
        vector = np.asarray(embed([text[:4000]]), dtype=np.float32)[0]
        store.monitors.add_input(tenant, trace_id, feature, base["ts"], vector.astype(np.float16).tobytes())
    return scores


#: Called with (tenant, trace id, review queue, why) when a monitor's check failed on a run whose
#: feature says ``review: {when: monitor failed}``; the edge queues it (keel.review).
OnFailed = Callable[[str, str, str, str], Awaitable[None]]


async def route_failed(pipeline: FeaturePipeline, job: Job, scores: list[Score], on_failed: OnFailed | None) -> bool:
    """Send the run to review when its feature asks for that and a check failed; True when sent."""
    failed = [s.check for s in scores if s.status == "ok" and s.passed is False]
    if on_failed is None or not failed or job.feature is None:
        return False
    review = load_feature(pipeline.root, job.feature).review
    if review is None or not review.after_monitors:
        return False
    why = f"monitor '{job.payload.get('monitor')}' failed: {', '.join(failed)}"
    await on_failed(job.tenant, str(job.payload["trace_id"]), review.queue, why)
    return True


def monitor_work(pipeline: FeaturePipeline, on_failed: OnFailed | None = None) -> Any:
    async def run(job: Job) -> tuple[Any, float | None]:
        if job.feature is None:
            raise FeatureNotFound("a monitor job names its feature")
        scores = await score_run(pipeline, job.tenant, job.feature, job.payload)
        await route_failed(pipeline, job, scores, on_failed)
        spent = sum(s.cost_usd or 0.0 for s in scores)
        result = {
            "trace_id": job.payload.get("trace_id"),
            "monitor": job.payload.get("monitor"),
            "scores": [{"check": s.check, "status": s.status, "passed": s.passed, "score": s.score} for s in scores],
        }
        return result, spent

    return run
