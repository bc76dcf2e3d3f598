"""What a check sees and what it says."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from keel.errors import ConfigError


class CheckError(ConfigError):
    """A check is misconfigured (unknown type, missing or wrong parameter)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    score: float  # 0..1, higher is better
    reason: str


@dataclass(slots=True)
class CheckContext:
    output: str
    value: Any = None  # the parsed structured output, when there is one
    expected: Any = None  # the case's expected answer, when it has one
    inputs: dict[str, Any] = field(default_factory=dict)
    sources: Sequence[str] = ()  # the texts the answer was given, in their citation order [1], [2], …
    retrieved_ids: Sequence[str] = ()  # document ids retrieval returned, best first
    expected_ids: Sequence[str] = ()  # document ids that should have been retrieved
    latency_ms: float | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None
    embed: Callable[[list[str]], Any] | None = None  # texts → unit vectors, for similarity checks


class Check(Protocol):
    name: str
    requires_llm: bool

    def __call__(self, ctx: CheckContext) -> Verdict: ...
