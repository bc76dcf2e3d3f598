"""One table of secret shapes: trace redaction hides each one, the PII guard finds the same, and
ordinary support text reads on untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from keel.guards.pii import detect
from keel.tracing.redact import redact_text
from keel.types import CallContext, ChatRequest
from tests.conftest import read_trace

# (text with a planted secret, the secret itself, what the trace keeps instead)
PLANTED = [
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc ok", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[API_KEY]"),
    ("webhook secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "[API_KEY]"),
    ("maps key AIzaSyA-1234567890abcdefghijklmnopqrstu used", "AIzaSyA-1234567890abcdefghijklmnopqrstu", "[API_KEY]"),
    (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy==;",
        "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy==",
        "AccountKey=[SECRET]",
    ),
    ('{"type": "service_account", "private_key_id": "' + "a1" * 20 + '"}', "a1" * 20, '"private_key_id": "[SECRET]"'),
    (
        "post to https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/abcdefghijklmnopqrstuvwx now",
        "https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/abcdefghijklmnopqrstuvwx",
        "[WEBHOOK]",
    ),
    ("db password=hunter2024 for prod", "hunter2024", "password=[SECRET]"),
    ('config {"api_key": "abc123xyz789"}', "abc123xyz789", '"api_key": "[SECRET]"'),
    ("token: s3cr3t-value please", "s3cr3t-value", "token: [SECRET]"),
    ("DATABASE_URL=postgresql://app:Sup3rS3cret@db.internal:5432/keel", "Sup3rS3cret", "app:[SECRET]@db.internal"),
    ("key sk-proj-AbCdEf0123456789xyz leaked", "sk-proj-AbCdEf0123456789xyz", "[API_KEY]"),
]

ORDINARY = [
    "How do I reset my password? The reset link in the email expired.",
    "Your password: reset it from Settings, then Security.",
    "The token expired after 24 hours; how long do tokens last?",
    "We moved from Mongolia to Portugal; can I change my billing country?",
    "See https://docs.example.com/api/v2#errors for the error codes.",
    "Upgrade to v2.14.1 on 2026-11-01; error 504 at 10:42.",
    "What is the secret to faster exports?",
]


@pytest.mark.parametrize(("text", "secret", "kept"), PLANTED)
def test_each_shape_is_hidden_in_traces_and_found_by_the_guard(text: str, secret: str, kept: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted and kept in redacted, redacted
    found = [f.text for f in detect(text, ner=False)]  # SECRET, or a longer overlapping finding (an email)
    assert any(secret in f for f in found), found


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_reads_on(text: str) -> None:
    assert redact_text(text) == text
    assert [f for f in detect(text, ner=False) if f.kind == "SECRET"] == []


def test_a_trace_rows_own_columns_are_scrubbed(home: Path) -> None:
    from keel.gateway.runtime import close_service
    from tests.conftest import scripted_service

    async def run() -> Any:
        service, _ = scripted_service(home)
        ctx = CallContext(user="jo@example.com", feature="sk-proj-AbCdEf0123456789xyz")
        await service.chat(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], ctx=ctx))
        other = CallContext(user="jo@example.com", feature="support")
        await service.chat(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], ctx=other))
        plain = CallContext(user="1234567890", feature="support")
        await service.chat(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], ctx=plain))
        await close_service(service)
        return ctx.trace_id, other.trace_id, plain.trace_id

    first, second, third = (read_trace(home, t) for t in asyncio.run(run()))
    assert "jo@example.com" not in str(first) and "AbCdEf0123456789xyz" not in str(first)
    assert first.user == second.user and first.user.startswith("~")  # one pseudonym per user: still groups
    assert second.feature == "support" and third.user == "1234567890"  # ordinary ids stay readable
