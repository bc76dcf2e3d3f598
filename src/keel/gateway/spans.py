"""Trace rows as the spans they export: a feature run's steps as its INTERNAL children, and captured
requests as GenAI input messages. (The row's own span is the recorder's: it knows the servers.)"""

from __future__ import annotations

from typing import Any

import orjson

from keel.store.traces import TraceRecord
from keel.tracing.tracer import CURRENT_ROOT, SpanData


def step_span(rec: TraceRecord, step: dict[str, Any]) -> SpanData:
    """A feature run's step (guards, cache, prompt, generation) as its INTERNAL child span: what it
    found as ``keel.<step>.*`` attributes, guard scores as ``keel.guard.<name>.score``."""
    name = str(step["name"])
    key = name.replace(" ", "_")
    attrs: dict[str, Any] = {"keel.trace_id": rec.id, "keel.feature": rec.feature, "keel.step": name}
    for field, value in (step.get("found") or {}).items():
        if field == "scores" and isinstance(value, dict):
            attrs.update({f"keel.guard.{g}.score": s for g, s in value.items()})
        elif field == "confidence":
            attrs["keel.confidence"] = value
        elif isinstance(value, str | int | float | bool):
            attrs[f"keel.{key}.{field}"] = value
        elif value is not None:
            attrs[f"keel.{key}.{field}"] = orjson.dumps(value).decode()
    start_ns = int((rec.ts + float(step["at_ms"]) / 1000) * 1e9)
    return SpanData(
        name=f"{name} {rec.feature}",
        keel_id=f"{rec.id}:{key}",
        root=CURRENT_ROOT.get() or rec.id,
        parent=rec.id,
        start_ns=start_ns,
        end_ns=start_ns + int(float(step["ms"]) * 1e6),
        attributes=attrs,
        kind="internal",
        error=step.get("error"),
    )


def input_messages(captured: Any) -> str | None:
    """The captured request as GenAI input messages (role and text parts)."""
    if not isinstance(captured, list):
        return None
    out = []
    for m in captured:
        if isinstance(m, dict):
            content = m.get("content")
            text = content if isinstance(content, str) else orjson.dumps(content).decode()
            out.append({"role": m.get("role"), "parts": [{"type": "text", "content": text}]})
    return orjson.dumps(out).decode()
