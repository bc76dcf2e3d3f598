from __future__ import annotations

import email.utils
import time

import pytest

from keel.errors import (
    BadUpstreamResponse,
    ContextWindowExceeded,
    RateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from keel.providers import openai_wire as wire


def test_usage_keeps_cached_and_reasoning_splits() -> None:
    usage = wire.parse_usage(
        {
            "prompt_tokens": 100,
            "completion_tokens": 40,
            "prompt_tokens_details": {"cached_tokens": 60},
            "completion_tokens_details": {"reasoning_tokens": 25},
        }
    )
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.reasoning_tokens) == (
        100,
        40,
        60,
        25,
    )
    assert usage.to_openai()["prompt_tokens_details"] == {"cached_tokens": 60}


def test_parse_response_requires_choices_with_a_message() -> None:
    ok = wire.parse_response({"model": "m", "choices": [{"message": {"content": "hi"}}]}, "p")
    assert ok.text == "hi" and ok.usage.source == "none"
    for bad in ({"model": "m"}, {"choices": []}, {"choices": [{"text": "legacy"}]}, {"choices": "x"}):
        with pytest.raises(BadUpstreamResponse):
            wire.parse_response(bad, "p")


def test_decode_json_rejects_garbage_with_a_snippet() -> None:
    with pytest.raises(BadUpstreamResponse, match="malformed JSON"):
        wire.decode_json(b"<html>oops</html>", "p")
    with pytest.raises(BadUpstreamResponse, match="not an object"):
        wire.decode_json(b"[1, 2]", "p")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert wire.parse_retry_after(headers) == expected


def test_retry_after_http_date() -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = wire.parse_retry_after({"retry-after": future})
    assert value is not None and 25 < value <= 31


def test_error_mapping_by_status_and_body() -> None:
    limited = wire.error_from_body(429, {"error": {"message": "slow down"}}, "p", {"retry-after": "3"})
    assert isinstance(limited, RateLimited) and limited.retry_after == 3.0 and "slow down" in limited.message
    too_long = wire.error_from_body(400, {"error": {"code": "context_length_exceeded", "message": "too long"}}, "p")
    assert isinstance(too_long, ContextWindowExceeded) and not too_long.retryable
    rejected = wire.error_from_body(400, {"error": {"message": "bad tool schema"}}, "p")
    assert isinstance(rejected, UpstreamRejected) and not rejected.retryable
    creds = wire.error_from_body(401, {"error": {"message": "bad key"}}, "p")
    assert isinstance(creds, UpstreamUnavailable) and not creds.retryable and "api_key" in creds.message
    down = wire.error_from_body(503, "<html>Service Unavailable</html>", "p")
    assert isinstance(down, UpstreamUnavailable) and down.retryable and down.upstream_status == 503
