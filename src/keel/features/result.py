"""What a feature run produces, and the events a run (blocking or streamed) yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keel.features.spec import FeatureSpec
from keel.features.structured import Partial
from keel.rag.answer import Citation
from keel.rag.found import Found
from keel.types import CallContext


@dataclass(slots=True)
class FeatureResult:
    feature: str
    answer: str
    value: Any = None  # the validated object for features with an output schema
    sources: list[Found] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    prompt_version: int = 0
    prompt_fallback: str | None = None
    model: str = ""
    experiment: str | None = None
    arm: str | None = None
    trace_id: str = ""
    cost_usd: float | None = None
    latency_ms: float = 0.0
    found_nothing: bool = False
    attempts: int = 1
    notes: list[str] = field(default_factory=list)
    cache: str | None = None  # for features that cache: "exact" or "semantic" (replayed), or "miss"
    confidence: float | None = None  # the lowest output-guard score, when output guards run
    guards: dict[str, float] = field(default_factory=dict)  # output guard → score
    guard_reasons: dict[str, str] = field(default_factory=dict)  # output guard → its verdict's reason
    review: dict[str, Any] | None = None  # the review route (queue, mode, reason), when the spec routes it

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape shared by the CLI, HTTP and the SDK."""
        value = self.value.model_dump(mode="json") if hasattr(self.value, "model_dump") else self.value
        return {
            "feature": self.feature,
            "answer": self.answer,
            "value": value,
            "prompt_version": self.prompt_version,
            "prompt_fallback": self.prompt_fallback,
            "model": self.model,
            "experiment": self.experiment,
            "arm": self.arm,
            "trace_id": self.trace_id,
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_ms, 2),
            "found_nothing": self.found_nothing,
            "attempts": self.attempts,
            "notes": self.notes,
            "cache": self.cache,
            "confidence": self.confidence,
            "guards": self.guards,
            "review": self.review,
            "sources": [s.as_dict() for s in self.sources],
            "citations": [{"number": c.number, "valid": c.valid} for c in self.citations],
        }


@dataclass(frozen=True, slots=True)
class Started:
    result: FeatureResult  # what will serve: prompt version, model, arm, sources, trace id


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Done:
    result: FeatureResult


FeatureEvent = Started | Delta | Partial | Done


def event_dict(event: FeatureEvent) -> dict[str, Any]:
    """An event as JSON (the SSE ``data`` of ``POST /v1/features/{name}/run`` with ``stream``)."""
    if isinstance(event, Delta):
        return {"type": "delta", "text": event.text}
    if isinstance(event, Partial):
        return {"type": "partial", "value": event.value, "attempt": event.attempt}
    kind = "started" if isinstance(event, Started) else "done"
    data = event.result.as_dict()
    if kind == "started":
        for key in ("answer", "value", "citations", "cost_usd", "latency_ms", "attempts"):
            data.pop(key)
    return {"type": kind, **data}


@dataclass(slots=True)
class Lookup:
    scope: str
    key: str
    text: str
    vector: Any = None


@dataclass(slots=True)
class Plan:
    """One run's working state, step to step."""

    spec: FeatureSpec
    result: FeatureResult
    ctx: CallContext
    model: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    max_output: int = 512
    lookup: Lookup | None = None  # the cache keys, when the feature caches
    pii: dict[str, str] = field(default_factory=dict)  # placeholder → value, when pii_redact is on
    inputs: dict[str, Any] | None = None  # what the model was given (redacted), for the trace
    index: str | None = None  # the retrieval index stamp, read once: the cache scope and monitors key on it


def text_input(inputs: dict[str, Any]) -> str | None:
    """The input a question lives in: ``question`` or ``query``, else the first text input."""
    for key in ("question", "query"):
        if isinstance(inputs.get(key), str):
            return key
    return next((k for k, v in inputs.items() if isinstance(v, str)), None)


def pieces(text: str, size: int = 24) -> list[str]:
    """An answer cut into stream deltas (replays and first-tier answers still stream)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
