"""Structured output: never return unvalidated data.

The model is asked for JSON (the provider's JSON-schema mode where its profile supports it; the
local llama.cpp model decodes against a grammar built from the same schema). The answer is always
parsed and validated; on failure the model is re-asked *with the validation error*, bounded by a
retry count and a token budget, and the usage of every attempt is counted. When every attempt
fails: a typed error, or the feature's declared deterministic fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import orjson

from keel.errors import ConfigError, KeelError
from keel.gateway.service import GatewayService
from keel.types import CallContext, ChatRequest, Usage

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


class StructuredOutputError(KeelError):
    """Every attempt returned something that is not valid against the schema."""

    status = 502
    error_type = "upstream_error"
    code = "invalid_structured_output"

    def __init__(self, message: str, attempts: list[str]) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass(slots=True)
class StructuredResult:
    value: Any
    attempts: int
    usage: Usage
    errors: list[str] = field(default_factory=list)
    fallback: bool = False
    trace_ids: list[str] = field(default_factory=list)  # one traced call per attempt
    cost_usd: float | None = None  # summed over attempts; None if any attempt was unpriced


def check_schema(schema: dict[str, Any]) -> None:
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"not a valid JSON Schema: {exc.message}") from None


def parse_and_validate(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """(value, None) when valid, (None, what is wrong) otherwise. Code fences are tolerated."""
    fenced = _FENCE.match(text)
    raw = fenced.group(1) if fenced else text.strip()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"the reply is not JSON ({exc})"
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return None, f"at {where}: {first.message}{more}"
    return value, None


def _add(total: Usage, usage: Usage) -> None:
    total.input_tokens += usage.input_tokens
    total.output_tokens += usage.output_tokens
    total.cached_input_tokens += usage.cached_input_tokens


async def complete_structured(
    service: GatewayService,
    *,
    model: str,
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    retries: int = 2,
    max_retry_tokens: int = 4000,
    params: dict[str, Any] | None = None,
    fallback: Any = None,
    ctx: CallContext | None = None,
) -> StructuredResult:
    check_schema(schema)
    request_params = dict(params or {})
    request_params["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
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
        return result

    for attempt in range(1, retries + 2):
        # every attempt is its own traced call (its own usage and cost), tagged like the caller's
        call = CallContext(tenant=base.tenant, user=base.user, feature=base.feature)
        calls.append(call)
        response = await service.chat(ChatRequest(model=model, messages=conversation, params=request_params, ctx=call))
        _add(total, response.usage)
        replies.append(response.text)
        value, problem = parse_and_validate(response.text, schema)
        if problem is None:
            return settle(StructuredResult(value, attempt, total, errors))
        errors.append(problem)
        if attempt > retries or total.input_tokens + total.output_tokens >= max_retry_tokens:
            break
        conversation = [
            *conversation,
            {"role": "assistant", "content": response.text},
            {"role": "user", "content": f"That is not valid: {problem}. Reply with only JSON that matches the schema."},
        ]
    if fallback is not None:
        return settle(StructuredResult(fallback, len(replies), total, errors, fallback=True))
    raise StructuredOutputError(f"no valid structured output after {len(replies)} attempt(s): {errors[-1]}", replies)
