"""Redaction for captured content: secrets and obvious personal data never reach a trace. Secrets
are the shapes of ``keel.tracing.secrets`` (the PII guard finds the same ones); emails, cards and
phones here are the always-on floor beneath the guard's detection."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any

from keel.tracing.secrets import SHAPES


def _digits(text: str) -> int:
    return sum(map(text.count, "0123456789"))  # ten C-speed scans beat one translate or regex


# The personal-data floor (label, pattern, a cheap test on (text, lowered text, digit count) that must
# pass before the pattern runs: most text skips most patterns). Secrets come first, from their table.
PATTERNS: list[tuple[str, re.Pattern[str], Callable[[str, str, int], bool]]] = [
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), lambda t, low, digits: "@" in t),
    ("CARD", re.compile(r"\b(?:\d[ -]?){13,19}\b"), lambda t, low, digits: digits >= 13),
    (
        "PHONE",
        re.compile(r"(?<![\w.])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?![\w.])"),
        lambda t, low, digits: digits >= 6,
    ),
]


def redact_secrets(text: str, low: str | None = None) -> str:
    """Every secret shape (keel.tracing.secrets) replaced by its label; a shape with a ``value``
    group keeps the rest (``password=[SECRET]``)."""
    low = text.lower() if low is None else low
    for shape in SHAPES:
        if not shape.maybe(low):
            continue
        spans = shape.spans(text)
        for start, end in reversed(spans):
            text = f"{text[:start]}[{shape.label}]{text[end:]}"
        if spans:
            low = text.lower()
    return text


def redact_text(text: str) -> str:
    text = redact_secrets(text)
    low, digits = text.lower(), _digits(text)  # computed once, read by every pattern's pre-test
    for label, pattern, maybe in PATTERNS:
        if maybe(text, low, digits):
            text = pattern.sub(f"[{label}]", text)
    return text


def redact(value: Any) -> Any:
    """Redact every string inside a JSON-like value."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    return value


def capture(value: Any, policy: str) -> Any:
    if policy == "off":
        return None
    if policy == "full":
        return value
    return redact(value)


SHORTEST_SECRET = 15  # the shortest shape without '=' or ':' (a Slack token, xoxb- and ten more)


def identifier(value: str | None) -> str | None:
    """An id column (user, feature, model alias) as a trace keeps it: itself, or — when it carries a
    secret or an address (a user id that is an email) — a stable pseudonym, so that grouping and
    filtering by it still work while the value itself never reaches the store."""
    if value is None or (len(value) < SHORTEST_SECRET and not any(c in value for c in "=:@")):
        return value  # too short to be any secret shape: the common case, without a scan
    return _identifier(value)


@functools.lru_cache(maxsize=8192)  # ids repeat (the same users, features and aliases, call after call)
def _identifier(value: str) -> str:
    if redact_secrets(value) == value and "@" not in value:
        return value  # numeric ids stay readable: the phone and card floor is for free text
    return "~" + hashlib.sha256(value.encode()).hexdigest()[:16]


def scrub(rec: Any) -> None:
    """A trace row's own columns under the redaction floor: ids pseudonymised, error text and notes
    redacted (what a call sent and said is ``capture``'s)."""
    rec.user, rec.feature, rec.alias = identifier(rec.user), identifier(rec.feature), identifier(rec.alias)
    if rec.error is not None:
        rec.error = redact_text(rec.error)
    if rec.notes:
        rec.notes = [redact_text(n) for n in rec.notes]
