"""OpenAI chat wire format ↔ Keel types, as pure functions testable without HTTP."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import orjson

from keel.errors import (
    BadUpstreamResponse,
    ContextWindowExceeded,
    ProviderError,
    RateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from keel.types import JSON, ChatChunk, ChatResponse, Usage

_CONTEXT_MARKERS = ("context_length_exceeded", "exceed_context_size", "maximum context length", "context window")


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_input_tokens=int(prompt_details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


def decode_json(raw: bytes, provider: str) -> JSON:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        snippet = raw[:200].decode("utf-8", "replace")
        raise BadUpstreamResponse(
            f"{provider} answered with malformed JSON: {snippet!r}", provider=provider, body=snippet
        ) from None
    if not isinstance(data, dict):
        raise BadUpstreamResponse(f"{provider} answered with JSON that is not an object", provider=provider)
    return data


def parse_response(data: JSON, provider: str) -> ChatResponse:
    """Validate an upstream ``chat.completion`` body just enough to serve it safely."""
    if "error" in data and "choices" not in data:
        raise error_from_body(500, data, provider)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadUpstreamResponse(f"{provider} answered without choices", provider=provider)
    if not isinstance(choices[0].get("message"), dict):
        raise BadUpstreamResponse(f"{provider} answered a choice without a message", provider=provider)
    usage = parse_usage(data.get("usage")) or Usage(source="none")
    return ChatResponse(body=data, usage=usage, model=str(data.get("model") or ""))


def parse_chunk(data: JSON, provider: str) -> ChatChunk:
    if "error" in data and "choices" not in data:
        raise error_from_body(500, data, provider)
    if not isinstance(data.get("choices", []), list):
        raise BadUpstreamResponse(f"{provider} streamed a chunk with malformed choices", provider=provider)
    return ChatChunk(body=data, usage=parse_usage(data.get("usage")))


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: fall back to our own backoff
    return max(0.0, parsed.timestamp() - time.time())


def _message(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("type") or err)
        if isinstance(err, str):
            return err
        if "message" in body:
            return str(body["message"])
    return str(body)[:300]


def error_from_body(status: int, body: Any, provider: str, headers: Mapping[str, str] | None = None) -> ProviderError:
    """Map an upstream error answer to the error tree (the only place messages are read)."""
    message = _message(body)
    text = orjson.dumps(body).decode() if isinstance(body, dict | list) else str(body)
    lowered = text.lower()
    detail = f"{provider} answered {status}: {message}"
    if status == 429:
        return RateLimited(
            detail, retry_after=parse_retry_after(headers or {}), provider=provider, status=status, body=text
        )
    if any(marker in lowered for marker in _CONTEXT_MARKERS):
        return ContextWindowExceeded(detail, provider=provider, status=status, body=text)
    if status in (401, 403):
        err = UpstreamUnavailable(
            f"{provider} refused Keel's credentials ({status}): check the deployment's api_key",
            provider=provider,
            status=status,
            body=text,
        )
        err.retryable = False
        return err
    if 400 <= status < 500:
        return UpstreamRejected(detail, provider=provider, status=status, body=text)
    return UpstreamUnavailable(detail, provider=provider, status=status, body=text)


def error_payload(raw: bytes) -> object:
    """An error body as JSON when it is JSON, else its first 500 characters of text."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:500].decode("utf-8", "replace")
