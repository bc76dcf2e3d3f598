"""Tracing behind a small interface: ``emit()`` sends a finished span (a call or a feature run, made
from its trace row), ``trace()`` opens a live one, ``current_span()`` finds it."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

#: the trace id of the feature run the current work belongs to (the pipeline sets it), so that spans
#: made below it (retrieval) nest under the run's span
CURRENT_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("keel_current_run", default=None)
#: the id of a span the current work nests under from outside any trace row — an eval run, whose
#: cases' feature runs, calls and judges then share its trace (the runner sets it)
CURRENT_ROOT: contextvars.ContextVar[str | None] = contextvars.ContextVar("keel_current_root", default=None)


@dataclass(slots=True)
class SpanData:
    """A finished span, with Keel's ids: ``keel_id`` is the row's trace id, ``parent`` the id of the
    feature run it belongs to (None at the root) and ``root`` the id that names the whole trace."""

    name: str
    keel_id: str
    root: str
    parent: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    kind: Literal["client", "internal"] = "client"
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: str | None = None  # the error's message: the span's status is ERROR
    metrics: dict[str, float] | None = None  # duration_s, input_tokens, output_tokens: the GenAI metrics


class Span(Protocol):
    def set_attribute(self, key: str, value: Any) -> None: ...

    def add_event(self, name: str, attributes: dict[str, Any]) -> None: ...


class Tracer(Protocol):
    def emit(self, span: SpanData) -> None:
        """Send a finished span (and its GenAI metrics). Never blocks or fails the call."""
        ...

    def trace(self, name: str, attributes: dict[str, Any] | None = None, *, start_ns: int | None = None) -> Any:
        """A context manager yielding a :class:`Span` (``start_ns`` backdates its start)."""
        ...

    def current_span(self) -> Span | None: ...


class NullSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        pass


class NullTracer:
    """Does nothing, cheaply."""

    _span = NullSpan()

    def emit(self, span: SpanData) -> None:
        pass

    @contextmanager
    def trace(
        self, name: str, attributes: dict[str, Any] | None = None, *, start_ns: int | None = None
    ) -> Iterator[Span]:
        yield self._span

    def current_span(self) -> Span | None:
        return None
