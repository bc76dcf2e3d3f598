"""Step 9's review routing: after the output guards, whether this answer goes to a person.

The spec's ``review.when`` (a condition, or a list of checks any of which holding sends it) and
``review.sample`` (a share of *all* answers, so reviewers see good ones too) decide. The decision
— queue, mode, why — is put on the result and the trace (a note and a ``review`` step with the
confidence); what happens next is the caller's: ``keel.review`` queues the item, and for ``hold``
keeps the answer from the user until someone decides. The sample is drawn from the trace id, so a
retried job decides the same way each attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keel.checks import CheckContext
from keel.checks.builtin import DONT_KNOW, REFUSAL
from keel.features.monitoring import sampled as sampled
from keel.features.result import FeatureResult, Plan
from keel.features.spec import FeatureSpec
from keel.features.steps import step

DEFAULT_FALLBACK = "We could not confirm an answer to this. A person will follow up."


@dataclass(frozen=True, slots=True)
class Route:
    queue: str
    mode: str  # hold | after
    reason: str
    sampled: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "mode": self.mode, "reason": self.reason, "sampled": self.sampled}


def answer_flags(answer: str) -> dict[str, bool]:
    """Whether an answer is an "I don't know" or a refusal, by the phrases of the checks of those names."""
    text = answer.casefold().replace("’", "'")
    return {"says_dont_know": any(w in text for w in DONT_KNOW), "refusal": any(w in text for w in REFUSAL)}


def run_values(result: FeatureResult) -> dict[str, Any]:
    """What a condition may name, read off a finished run."""
    flags = answer_flags(result.answer)
    return {
        "says_dont_know": result.found_nothing or flags["says_dont_know"],
        "refusal": flags["refusal"],
        "confidence": result.confidence,
        "guards": result.guards,
        "cost_usd": result.cost_usd,
        "latency_ms": result.latency_ms,
        "attempts": result.attempts,
        "model": result.model,
        "prompt_version": result.prompt_version,
        "found_nothing": result.found_nothing,
        "cached": result.cache in ("exact", "semantic"),
        "citations_valid": all(c.valid for c in result.citations),
        "fallback": any(n.startswith("output: every attempt") for n in result.notes),
    }


def decide(spec: FeatureSpec, result: FeatureResult) -> Route | None:
    """The review route of a finished run, or None when it is served without one."""
    review = spec.review
    if review is None:
        return None
    reason = None
    if review.after_monitors:
        pass  # routed once a monitor scores the run (keel.monitor), not here
    elif isinstance(review.when, str):
        condition = review.condition()
        values = run_values(result)
        if condition is not None and condition(values):
            reason = condition.why(values)
    elif review.when:
        ctx = CheckContext(output=result.answer, sources=[s.text for s in result.sources], inputs={})
        held = [check.name for check in review.checks() if check(ctx).passed]
        reason = ", ".join(held) if held else None
    if reason is not None:
        return Route(review.queue, review.mode, reason)
    if sampled(result.trace_id, review.sample):
        return Route(review.queue, review.mode, f"sampled ({review.sample:.0%} of answers)", sampled=True)
    return None


def route_review(plan: Plan) -> None:
    """Decide, and say so on the result and the trace."""
    spec, result = plan.spec, plan.result
    if spec.review is None:
        return
    with step(plan.ctx, "review") as found:
        route = decide(spec, result)
        found.update(confidence=result.confidence, routed=route.as_dict() if route else None)
    result.review = route.as_dict() if route else None
    if route is not None:
        verb = "held for" if route.mode == "hold" else "queued in"
        result.notes.append(f"review: {verb} '{route.queue}' ({route.reason})")


def fallback_of(spec: FeatureSpec) -> Any:
    """What a rejected held answer becomes: ``review.fallback``, else ``output.fallback``, else an apology."""
    if spec.review is not None and spec.review.fallback is not None:
        return spec.review.fallback
    if spec.output is not None and spec.output.fallback is not None:
        return spec.output.fallback
    return DEFAULT_FALLBACK
