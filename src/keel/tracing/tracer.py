"""Tracing behind a two-method interface: ``trace()`` opens a span, ``current_span()`` finds it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Span(Protocol):
    def set_attribute(self, key: str, value: Any) -> None: ...

    def add_event(self, name: str, attributes: dict[str, Any]) -> None: ...


class Tracer(Protocol):
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

    @contextmanager
    def trace(
        self, name: str, attributes: dict[str, Any] | None = None, *, start_ns: int | None = None
    ) -> Iterator[Span]:
        yield self._span

    def current_span(self) -> Span | None:
        return None
