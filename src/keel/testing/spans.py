"""Span capture: a Tracer that keeps every span in memory for assertions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from keel.tracing.tracer import Span, SpanData


@dataclass
class CapturedSpan:
    name: str
    attributes: dict[str, Any]
    start_ns: int | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    emitted: SpanData | None = None  # for finished spans: their ids, kind, end and status

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        self.events.append((name, attributes))


class SpanCapture:
    def __init__(self) -> None:
        self.spans: list[CapturedSpan] = []
        self._stack: list[CapturedSpan] = []

    def emit(self, span: SpanData) -> None:
        self.spans.append(CapturedSpan(span.name, dict(span.attributes), span.start_ns, list(span.events), span))

    @contextmanager
    def trace(
        self, name: str, attributes: dict[str, Any] | None = None, *, start_ns: int | None = None
    ) -> Iterator[Span]:
        span = CapturedSpan(name, dict(attributes or {}), start_ns)
        self.spans.append(span)
        self._stack.append(span)
        try:
            yield span
        finally:
            self._stack.pop()

    def current_span(self) -> Span | None:
        return self._stack[-1] if self._stack else None
