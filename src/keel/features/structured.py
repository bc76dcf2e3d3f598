"""Structured output: never return unvalidated data.

The model is asked for JSON (the provider's JSON-schema mode where its profile supports it; the
local llama.cpp model decodes against a grammar built from the same schema). The answer is always
parsed and validated; on failure the model is re-asked *with the validation error*, bounded by a
retry count and a token budget, and the usage of every attempt is counted. When every attempt
fails: a typed error, or the feature's declared deterministic fallback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel

from keel.checks.schema import check_schema, parse_and_validate
from keel.errors import ConfigError
from keel.errors import StructuredOutputError as StructuredOutputError
from keel.gateway.service import GatewayService
from keel.types import CallContext, ChatRequest, Usage


@dataclass(slots=True)
class StructuredResult:
    value: Any
    attempts: int
    usage: Usage
    errors: list[str] = field(default_factory=list)
    fallback: bool = False
    trace_ids: list[str] = field(default_factory=list)  # one traced call per attempt
    cost_usd: float | None = None  # summed over attempts; None if any attempt was unpriced


def _add(total: Usage, usage: Usage) -> None:
    total.input_tokens += usage.input_tokens
    total.output_tokens += usage.output_tokens
    total.cached_input_tokens += usage.cached_input_tokens


@dataclass(frozen=True, slots=True)
class Partial:
    """While a structured answer streams: the object parsed so far (never validated) and its attempt."""

    value: Any
    attempt: int


def partial_json(text: str) -> Any:
    """Best-effort parse of an unfinished JSON text: close open strings, arrays and objects, and drop
    a trailing incomplete member. None when nothing usable has arrived yet."""
    raw = text.lstrip()
    if raw.startswith("```"):
        raw = raw.split("\n", 1)[1] if "\n" in raw else ""
    stack: list[str] = []
    cuts: list[tuple[int, str]] = []  # (a prefix that ends on whole members, the closers it needs)
    in_string = escaped = False
    for i, ch in enumerate(raw):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
            cuts.append((i + 1, "".join(reversed(stack))))
        elif ch in "}]" and stack:
            stack.pop()
        elif ch == ",":
            cuts.append((i, "".join(reversed(stack))))
    candidates = [raw + ('"' if in_string else "") + "".join(reversed(stack))]
    candidates += [raw[:cut] + closers for cut, closers in reversed(cuts[-8:])]
    for candidate in candidates:
        try:
            return orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
    return None


def as_schema(schema: dict[str, Any] | type[BaseModel]) -> tuple[dict[str, Any], type[BaseModel] | None]:
    """A JSON Schema dict, or a Pydantic model class whose schema is used and whose instance is returned."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema(), schema
    if not isinstance(schema, dict):
        raise ConfigError(f"a structured output schema is a JSON Schema dict or a Pydantic model, not {type(schema)}")
    return schema, None


async def structured_events(
    service: GatewayService,
    *,
    model: str,
    messages: list[dict[str, Any]],
    schema: dict[str, Any] | type[BaseModel],
    retries: int = 2,
    max_retry_tokens: int = 4000,
    params: dict[str, Any] | None = None,
    fallback: Any = None,
    ctx: CallContext | None = None,
    stream: bool = False,
) -> AsyncIterator[Partial | StructuredResult]:
    """The attempt loop. Yields ``Partial`` objects while an attempt streams (``stream=True``) and
    ends with exactly one ``StructuredResult`` — or raises ``StructuredOutputError``."""
    json_schema, model_class = as_schema(schema)
    check_schema(json_schema)
    request_params = dict(params or {})
    request_params["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": json_schema, "strict": True},
    }
    conversation = list(messages)
    total = Usage()
    errors: list[str] = []
    replies: list[str] = []
    calls: list[CallContext] = []
    base = ctx or CallContext()

    def settle(result: StructuredResult) -> StructuredResult:
        result.trace_ids = [c.trace_id for c in calls]
        costs = [c.record.cost_usd if c.record is not None else None for c in calls]
        result.cost_usd = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
        if model_class is not None and not result.fallback:
            result.value = model_class.model_validate(result.value)
        return result

    for attempt in range(1, retries + 2):
        # every attempt is its own traced call (its own usage and cost), tagged like the caller's
        call = base.child()
        calls.append(call)
        request = ChatRequest(model=model, messages=conversation, params=request_params, ctx=call, stream=stream)
        if stream:
            parts: list[str] = []
            shown: Any = None
            async for chunk in service.chat_stream(request):
                if chunk.usage is not None:
                    _add(total, chunk.usage)
                if chunk.text:
                    parts.append(chunk.text)
                    now = partial_json("".join(parts))
                    if now is not None and now != shown:
                        shown = now
                        yield Partial(now, attempt)
            text = "".join(parts)
        else:
            response = await service.chat(request)
            _add(total, response.usage)
            text = response.text
        replies.append(text)
        value, problem = parse_and_validate(text, json_schema)
        if problem is None:
            yield settle(StructuredResult(value, attempt, total, errors))
            return
        errors.append(problem)
        if attempt > retries or total.input_tokens + total.output_tokens >= max_retry_tokens:
            break
        conversation = [
            *conversation,
            {"role": "assistant", "content": text},
            {"role": "user", "content": f"That is not valid: {problem}. Reply with only JSON that matches the schema."},
        ]
    if fallback is not None:
        yield settle(StructuredResult(fallback, len(replies), total, errors, fallback=True))
        return
    raise StructuredOutputError(f"no valid structured output after {len(replies)} attempt(s): {errors[-1]}", replies)


async def complete_structured(
    service: GatewayService,
    *,
    model: str,
    messages: list[dict[str, Any]],
    schema: dict[str, Any] | type[BaseModel],
    retries: int = 2,
    max_retry_tokens: int = 4000,
    params: dict[str, Any] | None = None,
    fallback: Any = None,
    ctx: CallContext | None = None,
) -> StructuredResult:
    """Validated structured output (see the module docstring); the value is a Pydantic instance when
    ``schema`` is a Pydantic model."""
    async for event in structured_events(
        service,
        model=model,
        messages=messages,
        schema=schema,
        retries=retries,
        max_retry_tokens=max_retry_tokens,
        params=params,
        fallback=fallback,
        ctx=ctx,
    ):
        if isinstance(event, StructuredResult):
            return event
    raise AssertionError("structured_events ends with a result or raises")  # pragma: no cover
