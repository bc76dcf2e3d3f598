"""What a check sees and what it says."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from keel.errors import CheckError as CheckError
from keel.errors import JudgeError as JudgeError


class Judge(Protocol):
    """A model call for checks that need one (``llm-rubric``, ``grounded`` with ``method: llm``): the
    runner supplies it, routed through the gateway so its cost and trace are counted."""

    def __call__(
        self,
        messages: list[dict[str, str]],
        *,
        schema: dict[str, Any],
        model: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 256,
    ) -> Awaitable[str]: ...


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
    structured_ok: bool | None = None  # structured output: whether an attempt validated (None: not structured)
    embed: Callable[[list[str]], Any] | None = None  # texts → unit vectors, for similarity checks
    judge: Judge | None = None  # a model call, for checks that declare ``requires_llm``


class Check(Protocol):
    name: str
    requires_llm: bool

    def __call__(self, ctx: CheckContext) -> Verdict | Awaitable[Verdict]: ...
