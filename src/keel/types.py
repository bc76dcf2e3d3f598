"""Data types shared by every layer. The OpenAI chat wire format is the canonical shape of bodies."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

JSON = dict[str, Any]
UsageSource = Literal["provider", "estimated", "none"]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass(slots=True)
class Usage:
    """Token usage as the provider reported it. ``input_tokens`` includes cached ones."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    source: UsageSource = "provider"

    def to_openai(self) -> JSON:
        out: JSON = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }
        if self.cached_input_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_input_tokens}
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out


@dataclass(slots=True)
class Attempt:
    """One try against one deployment, kept on the trace whatever its outcome."""

    deployment: str
    provider: str
    model: str
    started: float
    ended: float = 0.0
    error_type: str | None = None
    error: str | None = None
    status: int | None = None
    ttft_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None


@dataclass(slots=True)
class CallContext:
    """What the edge knows about a call, and what the gateway learns while serving it."""

    trace_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tenant: str | None = None
    user: str | None = None
    feature: str | None = None
    key: str | None = None  # the API key's id, for per-key budgets and limits
    mode: str | None = None  # fast / accurate…, when the request chose its model by mode
    budgets: dict[str, Any] = field(default_factory=dict)  # a feature's own budgets (BudgetSettings by name)
    per_call_usd: float | None = None  # a feature's ceiling on one call's worst case
    notes: list[str] = field(default_factory=list)  # what the gateway did to this call (policy, mode)
    attempts: list[Attempt] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    record: Any = None  # the finished trace record, set when the call ends
    parent: str | None = None  # the feature run this call belongs to
    prompt: str | None = None
    prompt_version: int | None = None
    experiment: str | None = None
    arm: str | None = None
    batch: str | None = None  # the Batch API batch this call is a line of (its budget is the batch's)
    children: list[CallContext] = field(default_factory=list, repr=False)
    steps: list[dict[str, Any]] = field(default_factory=list, repr=False)  # a feature run's, for its trace

    def child(self, **overrides: Any) -> CallContext:
        """A new call inside this one: same tenant, user, feature and tags; its own trace id; kept in
        ``children`` so the parent can sum what its calls used and cost."""
        tags = {
            "tenant": self.tenant,
            "key": self.key,
            "budgets": self.budgets,
            "per_call_usd": self.per_call_usd,
            "user": self.user,
            "feature": self.feature,
            "parent": self.trace_id,
            "prompt": self.prompt,
            "prompt_version": self.prompt_version,
            "experiment": self.experiment,
            "arm": self.arm,
        }
        call = CallContext(**{**tags, **overrides})
        self.children.append(call)
        return call


@dataclass(slots=True)
class ChatRequest:
    """A chat completion request. ``params`` carries everything else verbatim (tools, temperature…)."""

    model: str
    messages: list[JSON]
    stream: bool = False
    max_tokens: int | None = None
    params: JSON = field(default_factory=dict)
    ctx: CallContext = field(default_factory=CallContext)

    def to_openai(self, model: str | None = None) -> JSON:
        body: JSON = {"model": model or self.model, "messages": self.messages, **self.params}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body


@dataclass(slots=True)
class ChatResponse:
    """A complete answer: ``body`` is an OpenAI ``chat.completion`` object."""

    body: JSON
    usage: Usage
    model: str

    @property
    def text(self) -> str:
        choices = self.body.get("choices") or [{}]
        content = (choices[0].get("message") or {}).get("content")
        return content if isinstance(content, str) else ""


@dataclass(slots=True)
class ChatChunk:
    """One streamed piece: ``body`` is an OpenAI ``chat.completion.chunk`` object."""

    body: JSON
    usage: Usage | None = None

    @property
    def text(self) -> str:
        choices = self.body.get("choices") or []
        if not choices:
            return ""
        content = (choices[0].get("delta") or {}).get("content")
        return content if isinstance(content, str) else ""

    @property
    def has_content(self) -> bool:
        """True when the chunk carries something the client would show (text or a tool call)."""
        choices = self.body.get("choices") or []
        if not choices:
            return False
        delta = choices[0].get("delta") or {}
        return bool(delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"))


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    inputs: list[str]
    ctx: CallContext = field(default_factory=CallContext)


@dataclass(slots=True)
class EmbeddingResponse:
    vectors: list[list[float]]
    usage: Usage
    model: str

    def to_openai(self, model: str) -> JSON:
        return {
            "object": "list",
            "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(self.vectors)],
            "usage": {"prompt_tokens": self.usage.input_tokens, "total_tokens": self.usage.input_tokens},
        }
