"""What a reviewer is shown of an answer, and the item as the API, the CLI and the dashboard show it.

The view is made once, when the item is queued, under the trace capture policy (``redacted`` by
default: secrets and personal data replaced), so a reviewer never needs access to traces: the
question, the answer, each source with the answer's sentences that cite it, the output guards'
scores with their reasons, the prompt version, the model and the cost. A role listed in
``review.raw_roles`` is shown a held answer as it will be served instead.
"""

from __future__ import annotations

import re
from typing import Any

from keel.features.result import FeatureResult
from keel.store.reviews import ReviewItem
from keel.text import cited
from keel.tracing.redact import capture

SOURCE_TEXT = 1200  # characters of each source an item keeps
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*(?:\s*\[\d+\])*")


def cited_spans(answer: str, count: int) -> dict[int, list[str]]:
    """Source number → the answer's sentences that cite it."""
    spans: dict[int, list[str]] = {}
    for match in _SENTENCE.finditer(answer):
        sentence = match.group(0).strip()
        for number in cited(sentence):
            if 1 <= number <= count and sentence not in spans.setdefault(number, []):
                spans[number].append(sentence)
    return spans


def make_view(result: FeatureResult, inputs: dict[str, Any], policy: str, prompt: str | None) -> dict[str, Any]:
    """The reviewer's view of a run, under the capture policy."""
    answer = result.answer
    spans = cited_spans(answer, len(result.sources))
    sources = []
    for number, s in enumerate(result.sources, 1):
        sources.append(
            {
                "number": number,
                "doc": s.doc_id,
                "title": s.title,
                "score": round(s.score, 4),
                "text": capture(s.text[:SOURCE_TEXT], policy),
                "cited": capture(spans.get(number, []), policy),
            }
        )
    return {
        "feature": result.feature,
        "inputs": capture(inputs, policy),
        "answer": capture(answer, policy),
        "value": capture(_plain(result.value), policy),
        "sources": sources,
        "citations": [{"number": c.number, "valid": c.valid} for c in result.citations],
        "guards": {
            name: {"score": score, "reason": capture(result.guard_reasons.get(name), policy)}
            for name, score in result.guards.items()
        },
        "notes": capture(result.notes, policy),
        "prompt": prompt,
        "prompt_version": result.prompt_version,
        "model": result.model,
        "cost_usd": result.cost_usd,
        "latency_ms": round(result.latency_ms, 2),
        "capture": policy,
    }


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def item_json(item: ReviewItem, *, raw: bool = False) -> dict[str, Any]:
    """An item as the API shows it; ``raw`` shows a held answer as it will be served."""
    view = dict(item.view)
    if raw and item.held is not None:
        served = item.held.get("serve") or {}
        view.update(answer=served.get("answer"), value=served.get("value"), raw=True)
    return {
        "id": item.id,
        "object": "review.item",
        "queue": item.queue,
        "status": item.status,
        "mode": item.mode,
        "feature": item.feature,
        "trace_id": item.trace_id,
        "job_id": item.job_id,
        "reason": item.reason,
        "sampled": item.sampled,
        "confidence": item.confidence,
        "prompt_version": item.prompt_version,
        "model": item.model,
        "cost_usd": item.cost_usd,
        "claimed_by": item.claimed_by,
        "claim_until": item.claim_until,
        "due": item.due,
        "breached": item.breached,
        "decision": None
        if item.action is None
        else {
            "action": item.action,
            "output": item.output,
            "reason": item.comment,
            "labels": item.labels,
            "reviewer": item.reviewer,
            "at": item.decided,
        },
        "created": item.created,
        "item": view,
        "links": {
            "self": f"/v1/review/items/{item.id}",
            "claim": f"/v1/review/items/{item.id}/claim",
            "decision": f"/v1/review/items/{item.id}/decision",
        },
    }
