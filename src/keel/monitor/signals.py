"""The signals a monitor watches, and how each is read off a stored feature run — no judge needed,
so every run counts, not only the sample.

Each signal has a kind (a *rate* of runs where something holds, a *score* per run, a *category*),
a direction where one is better (a pass rate up, latency down; none for pure drift such as answer
length), and a family: ``quality`` (a move the wrong way is a *drop*), ``drift`` (inputs or outputs
changed distribution) or ``ops`` (latency, cost: shown, alerted as drift). Checks scored
on the sample (``check:<name>``), feedback (``feedback:<name>``) and input embeddings join at
comparison time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from keel.features.reviewing import answer_flags
from keel.store.monitors import MonitorRun
from keel.store.traces import TraceRecord

Kind = Literal["rate", "score", "category", "embedding"]
Family = Literal["quality", "drift", "ops"]


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    kind: Kind
    better: Literal["up", "down"] | None
    family: Family
    label: str  # how a person reads it

    @property
    def alerts_on(self) -> str:
        """The alert type a significant move raises: ``drop`` (quality the wrong way) or ``drift``."""
        return "drop" if self.family == "quality" and self.better is not None else "drift"


FIXED: dict[str, Signal] = {
    s.name: s
    for s in (
        Signal("confidence", "score", "up", "quality", "confidence"),
        Signal("refusal", "rate", "down", "quality", "refusal rate"),
        Signal("dont_know", "rate", "down", "quality", '"I don\'t know" rate'),
        Signal("citations_invalid", "rate", "down", "quality", "invalid citation rate"),
        Signal("fallback", "rate", "down", "quality", "schema failure rate (fallback served)"),
        Signal("reask", "rate", "down", "quality", "re-ask rate"),
        Signal("found_nothing", "rate", "down", "quality", "share answered 'nothing found'"),
        Signal("input_flagged", "rate", None, "drift", "input guard trip rate"),
        Signal("pii_redacted", "rate", None, "drift", "PII redaction rate"),
        Signal("retrieval_top", "score", None, "drift", "top retrieval score"),
        Signal("input_chars", "score", None, "drift", "input length (chars)"),
        Signal("answer_chars", "score", None, "drift", "answer length (chars)"),
        Signal("label", "category", None, "drift", "output label distribution"),
        Signal("error", "rate", "down", "quality", "error rate"),
        Signal("latency_ms", "score", "down", "ops", "latency (ms)"),
        Signal("cost_usd", "score", "down", "ops", "cost per call (USD)"),
        Signal("cache_hit", "rate", None, "ops", "cache hit rate"),
    )
}
INPUT = Signal("input_embedding", "embedding", None, "drift", "inputs told from reference (AUC)")


def signal(name: str) -> Signal:
    """A signal by its name, the per-check, per-guard and per-feedback ones included."""
    if name in FIXED:
        return FIXED[name]
    if name == INPUT.name:
        return INPUT
    prefix, _, rest = name.partition(":")
    if prefix == "guard":
        return Signal(name, "score", "up", "quality", f"{rest} guard score")
    if prefix == "check":
        return Signal(name, "rate", "up", "quality", f"{rest} pass rate")
    if prefix == "feedback":
        return Signal(name, "score", "up", "quality", f"feedback '{rest}' mean")
    if prefix == "thumbs":
        return Signal(name, "rate", "up", "quality", f"feedback '{rest}' positive rate")
    raise KeyError(name)


def _length(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(v)) for v in value.values())
    return len(str(value))


def _label(answer: Any, field: str | None) -> str | None:
    """The category a monitor watches: a structured answer's ``field`` (``label`` by default, so a
    classifier's output is watched unasked), or the whole answer with ``category: answer``."""
    if field == "answer":
        return None if answer is None else str(answer).strip().casefold()[:80]
    if isinstance(answer, dict):
        value = answer.get(field or "label")
        return None if value is None else str(value)[:80]
    return None


def read_run(record: TraceRecord, category: str | None = None) -> MonitorRun:
    """A stored feature run's signals (a value the trace did not keep is left out, never guessed)."""
    guards = record.found("output guards")
    retrieval = record.found("retrieval")
    generation = record.found("generation")
    inputs = record.found("input guards")
    notes = record.notes or []
    answer = record.response
    values: dict[str, Any] = {
        "error": record.status == "error",
        "latency_ms": record.latency_ms,
        "cost_usd": record.cost_usd,
        "fallback": any(n.startswith("output: every attempt") for n in notes),
        "citations_invalid": any(n.startswith("citations:") for n in notes),
        "found_nothing": any("answered without a model call" in n for n in notes),
    }
    if record.status != "ok":
        return _run(record, values, retrieval)
    if isinstance(answer, (str, dict)):
        text = answer if isinstance(answer, str) else " ".join(str(v) for v in answer.values())
        flags = answer_flags(text)
        values.update(refusal=flags["refusal"], dont_know=flags["says_dont_know"] or values["found_nothing"])
        values["answer_chars"] = _length(answer)
        label = _label(answer, category)
        if label is not None:
            values["label"] = label
    if record.request is not None:
        values["input_chars"] = _length(record.request)
    if guards:
        values["confidence"] = guards.get("confidence")
        for name, score in (guards.get("scores") or {}).items():
            values[f"guard:{name}"] = score
    if inputs:
        values["input_flagged"] = bool(inputs.get("flagged"))
        values["pii_redacted"] = bool(inputs.get("redacted"))
    if isinstance(generation.get("attempts"), int):
        values["reask"] = generation["attempts"] > 1
    cache = record.found("cache")
    if cache:
        values["cache_hit"] = cache.get("result") in ("exact", "semantic")
    chunks = retrieval.get("chunks") or []
    if chunks:
        tops = [c.get("vector") if c.get("vector") is not None else c.get("score") for c in chunks]
        known = [float(t) for t in tops if t is not None]
        values["retrieval_top"] = max(known) if known else None
    return _run(record, values, retrieval)


def _run(record: TraceRecord, values: dict[str, Any], retrieval: dict[str, Any]) -> MonitorRun:
    return MonitorRun(
        tenant=record.tenant or "default",
        trace_id=record.id,
        feature=str(record.feature),
        ts=record.ts,
        values={k: v for k, v in values.items() if v is not None},
        prompt_version=record.prompt_version,
        model=record.alias or record.model,
        index_version=retrieval.get("index"),
        arm=record.arm,
    )


def read_call(record: TraceRecord, feature: str) -> MonitorRun:
    """A raw gateway call's signals (a keel.yaml monitor's), under ``feature`` (``gateway:<name>``)."""
    values: dict[str, Any] = {
        "error": record.status == "error",
        "latency_ms": record.latency_ms,
        "cost_usd": record.cost_usd,
    }
    if record.status == "ok" and isinstance(record.response, str):
        flags = answer_flags(record.response)
        values.update(refusal=flags["refusal"], dont_know=flags["says_dont_know"], answer_chars=len(record.response))
    if isinstance(record.request, list):
        asked = [m.get("content") for m in record.request if isinstance(m, dict) and m.get("role") == "user"]
        if asked and isinstance(asked[-1], str):
            values["input_chars"] = len(asked[-1])
    return MonitorRun(
        tenant=record.tenant or "default",
        trace_id=record.id,
        feature=feature,
        ts=record.ts,
        values={k: v for k, v in values.items() if v is not None},
        model=record.alias or record.model,
    )
