"""The guard steps of a feature run (``keel.guards`` does the screening): inputs sized, screened and
redacted before anything runs; retrieved chunks screened before the model sees them; the answer
checked after; critical actions decided by rules."""

from __future__ import annotations

import re
from typing import Any

from keel.checks import CheckContext
from keel.errors import OutputBlocked as OutputBlocked
from keel.features.result import Plan
from keel.features.spec import FeatureSpec
from keel.guards.actions import decide
from keel.guards.inputs import InputGuard
from keel.guards.output import guard_check, redact_answer
from keel.guards.pii import redact_many
from keel.guards.screen import screen
from keel.rag.answer import NOTHING_FOUND
from keel.rag.backends import Collections
from keel.rag.found import Found


def screen_inputs(spec: FeatureSpec, inputs: dict[str, Any]) -> str | None:
    """The one input-guard step (keel.guards.inputs) over every text input: block (400) or a note."""
    size = spec.guards.rule("max_tokens") if spec.guards is not None else None
    rule = spec.guards.rule("injection") if spec.guards is not None else None
    guard = InputGuard(
        max_tokens=size.limit if size is not None else None,
        allows="this feature takes",
        inject=rule is not None,
        threshold=rule.threshold if rule is not None else None,
        action="flag" if rule is not None and rule.action == "flag" else "block",
    )
    texts = {f"input '{k}'": v for k, v in inputs.items() if isinstance(v, str)}
    note = guard.check(texts)
    return None if note is None else f"{note}; not cached"


def redact_inputs(spec: FeatureSpec, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """pii_redact: text inputs with placeholders (<EMAIL_1>), the mapping back, and a note."""
    rule = spec.guards.rule("pii_redact") if spec.guards is not None else None
    if rule is None:
        return inputs, {}, None
    keys = [k for k, v in inputs.items() if isinstance(v, str)]
    texts, mapping, found = redact_many([inputs[k] for k in keys], keep=frozenset(rule.keep))
    out = {**inputs, **dict(zip(keys, texts, strict=True))}
    kinds = {f.kind for f in found}
    note = f"guard pii_redact: {', '.join(sorted(kinds))} replaced by placeholders before the model" if kinds else None
    return out, mapping, note


def unrestored(answer: str, plan: Plan | None) -> str:
    """What the trace keeps of an answer: with the redacted values back in placeholder form."""
    if plan is None or not plan.pii:
        return answer
    for placeholder, original in plan.pii.items():
        answer = answer.replace(original, re.sub(r"<([A-Z]+)_\d+(_\w+)?>", r"[\1]", placeholder))
    return answer


def screen_sources(plan: Plan, found: list[Found]) -> list[Found]:
    """Retrieved chunks through the injection guard on the ``retrieved`` channel (the document
    threshold; a rule's ``threshold`` is for the inputs): poisoned ones dropped, noted."""
    spec = plan.spec
    rule = spec.guards.rule("injection") if spec.guards is not None else None
    if rule is None or not found:
        return found
    kept = []
    for hit in found:
        verdict = screen(hit.text, channel="retrieved")
        if verdict.flagged:
            plan.result.notes.append(f"guard injection: dropped {hit.doc_id} ({'; '.join(verdict.reasons)[:160]})")
        else:
            kept.append(hit)
    return kept


def guard_output(plan: Plan, collections: Collections | None) -> None:
    """Output guards in the spec's order, each a check from the registry; the lowest score is the
    answer's confidence."""
    spec, result = plan.spec, plan.result
    rules = spec.guards.output if spec.guards is not None else []
    if not rules:
        return
    failed = any(n.startswith("output: every attempt") for n in result.notes)
    ctx = CheckContext(
        output=result.answer,
        sources=[s.text for s in result.sources],
        embed=collections.embed if collections is not None else None,
        structured_ok=None if spec.output is None else not failed,
    )
    for rule in rules:
        verdict = guard_check(rule.name, rule.threshold, tuple(rule.keep))(ctx)
        result.guards[rule.name] = round(verdict.score, 3)
        result.guard_reasons[rule.name] = verdict.reason[:500]
        if verdict.passed:
            continue
        action = rule.action or "flag"
        result.notes.append(f"guard {rule.name} ({action}): {verdict.reason}")
        if action == "block":
            raise OutputBlocked(f"guard '{rule.name}' blocked the answer: {verdict.reason}")
        if action == "redact" and rule.name == "pii":
            result.answer = ctx.output = redact_answer(result.answer, frozenset(rule.keep), ctx.sources)
        if action == "fallback":
            fallback = spec.output.fallback if spec.output is not None else None
            result.answer = fallback if isinstance(fallback, str) else NOTHING_FOUND
            result.citations = []
            break
    result.confidence = min(result.guards.values()) if result.guards else None


def decide_action(plan: Plan, proposal: Any) -> Any:
    """Critical actions: the model proposed, the spec's rules decide (keel.guards.actions)."""
    decision = decide(plan.spec.actions, proposal, plan.inputs or {})
    if decision is None:
        return proposal
    if decision.allowed:
        plan.result.notes.append(f"action {decision.action}: every rule holds")
        return proposal
    fallback = plan.spec.actions[decision.action].fallback
    plan.result.notes.append(f"action {decision.action} refused by rules: {'; '.join(decision.reasons)}")
    plan.result.value = fallback
    return fallback
