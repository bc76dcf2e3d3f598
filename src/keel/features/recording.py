"""The feature run's own trace row: the parent of every model call it made, with their summed
usage and cost, the prompt version, the experiment arm, and what the trace may keep of the inputs
and the answer (the redacted values back in placeholder form)."""

from __future__ import annotations

import time
from typing import Any

from keel.cost.prices import total_cost
from keel.features.guarding import unrestored
from keel.features.result import Plan
from keel.store.traces import TraceRecord, outcome
from keel.tracing.redact import capture
from keel.types import CallContext


def feature_record(
    ctx: CallContext,
    plan: Plan | None,
    inputs: dict[str, Any],
    started: float,
    error: BaseException | None,
    capture_policy: str,
) -> TraceRecord:
    """The feature run's own trace row: the parent of every model call it made."""
    records = [c.record for c in ctx.children if c.record is not None]
    cancelled = isinstance(error, GeneratorExit)
    result = plan.result if plan is not None else None
    rec = TraceRecord(
        id=ctx.trace_id,
        ts=ctx.started,
        operation="feature",
        tenant=ctx.tenant,
        user=ctx.user,
        feature=ctx.feature,
        alias=plan.model if plan else None,
        deployment=records[-1].deployment if records else None,
        provider=records[-1].provider if records else None,
        model=records[-1].model if records else None,
        stream=False,
        **outcome(None if cancelled else error, cancelled=cancelled),
        input_tokens=sum(r.input_tokens for r in records),
        output_tokens=sum(r.output_tokens for r in records),
        cached_tokens=sum(r.cached_tokens for r in records),
        reasoning_tokens=sum(r.reasoning_tokens for r in records),
        usage_source="calls" if records else "none",
        cost_usd=summed_cost(ctx),
        cost_source=_cost_source(records),
        latency_ms=(time.perf_counter() - started) * 1000,
        request=capture(plan.inputs if plan is not None and plan.inputs is not None else inputs, capture_policy),
        response=capture(unrestored(result.answer, plan), capture_policy) if result and result.answer else None,
        prompt=ctx.prompt,
        prompt_version=ctx.prompt_version,
        experiment=ctx.experiment,
        arm=ctx.arm,
        notes=(result.notes or None) if result else None,
        steps=sorted(ctx.steps, key=lambda s: float(s["at_ms"])) or None,
    )
    return rec


def _cost_source(records: list[TraceRecord]) -> str | None:
    sources = {r.cost_source for r in records}
    if len(sources) == 1:
        return next(iter(sources))  # e.g. every call ran on the local model
    return f"sum of {len(records)} calls" if records else None


def summed_cost(ctx: CallContext) -> float | None:
    """What the run's calls cost together; None when any of them is unpriced."""
    return total_cost(c.record.cost_usd for c in ctx.children if c.record is not None)
