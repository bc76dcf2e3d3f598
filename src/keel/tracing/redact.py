"""Redaction for captured content: secrets and obvious personal data never reach a trace.
(The guards issue adds Presidio-based PII detection; these patterns are the always-on floor.)"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


def _digits(text: str) -> int:
    return sum(map(text.count, "0123456789"))  # ten C-speed scans beat one translate or regex


# (label, pattern, a cheap test on (text, lowered text, digit count) that must pass before the pattern
# runs: most text skips most patterns)
PATTERNS: list[tuple[str, re.Pattern[str], Callable[[str, str, int], bool]]] = [
    (
        "PRIVATE_KEY",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
        lambda t, low, digits: "PRIVATE KEY" in t,
    ),
    (
        "API_KEY",
        re.compile(r"\b(?:sk|pk|rk|keel)-[A-Za-z0-9_\-]{16,}\b"),
        lambda t, low, digits: any(p in t for p in ("sk-", "pk-", "rk-", "keel-")),
    ),
    ("API_KEY", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), lambda t, low, digits: "AKIA" in t or "ASIA" in t),
    (
        "API_KEY",
        re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
        lambda t, low, digits: any(f"gh{c}_" in t for c in "pousr"),
    ),
    ("API_KEY", re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}\b"), lambda t, low, digits: "xox" in t),
    ("BEARER", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"), lambda t, low, digits: "bearer" in low),
    (
        "JWT",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
        lambda t, low, digits: "eyJ" in t,
    ),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), lambda t, low, digits: "@" in t),
    ("CARD", re.compile(r"\b(?:\d[ -]?){13,19}\b"), lambda t, low, digits: digits >= 13),
    (
        "PHONE",
        re.compile(r"(?<![\w.])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?![\w.])"),
        lambda t, low, digits: digits >= 6,
    ),
]


def redact_text(text: str) -> str:
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
