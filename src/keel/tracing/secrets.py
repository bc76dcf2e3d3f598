"""The shapes of secrets, written once: trace redaction (``keel.tracing.redact``) and the PII guard
(``keel.guards.pii``) both find them from this table.

Each shape has a label for trace redaction (``[API_KEY]``), a pattern, and hints: lower-case
substrings of which one must be in the text before the pattern runs (most text skips most shapes).
A pattern with a ``value`` group hides only that part (``password=[SECRET]``,
``postgresql://app:[SECRET]@db``), so the text still reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Shape:
    label: str
    pattern: re.Pattern[str]
    hints: tuple[str, ...]

    def maybe(self, lowered: str) -> bool:
        return any(h in lowered for h in self.hints)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the secret is: the ``value`` group where the pattern has one, else the whole match."""
        group = "value" if "value" in self.pattern.groupindex else 0
        return [m.span(group) for m in self.pattern.finditer(text) if m.group(group)]


_ASSIGNED = r"(?:password|passwd|pwd|secret|client[_-]?secret|token|api[_-]?key|access[_-]?key|auth[_-]?token)"

SHAPES: tuple[Shape, ...] = (
    Shape(
        "PRIVATE_KEY",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
        ("private key",),
    ),
    # OpenAI, Anthropic, Keel's own keys (sk-, sk-proj-, sk-ant-, keel-)
    Shape("API_KEY", re.compile(r"\b(?:sk|pk|rk|keel)-[A-Za-z0-9_\-]{16,}"), ("sk-", "pk-", "rk-", "keel-")),
    # Stripe (sk_live_, rk_test_, whsec_)
    Shape(
        "API_KEY",
        re.compile(r"\b(?:(?:sk|rk|pk)_(?:live|test)|whsec)_[A-Za-z0-9]{16,}"),
        ("_live_", "_test_", "whsec_"),
    ),
    Shape("API_KEY", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), ("aiza",)),  # Google API keys
    Shape("API_KEY", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), ("akia", "asia")),  # AWS access key ids
    Shape("API_KEY", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    Shape("API_KEY", re.compile(r"\bxox[abpors]-[A-Za-z0-9-]{10,}"), ("xox",)),  # Slack tokens
    Shape("API_KEY", re.compile(r"\bhb_(?:live|test)_[A-Za-z0-9]{12,}"), ("hb_",)),  # the demo handbook's keys
    Shape(
        "WEBHOOK",
        re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9]+/[A-Za-z0-9]+/[A-Za-z0-9]+"),
        ("hooks.slack.com",),
    ),
    # Azure storage / service bus connection strings and SAS signatures
    Shape(
        "SECRET",
        re.compile(r"(?i)\b(?:AccountKey|SharedAccessKey|sig)=(?P<value>[A-Za-z0-9+/%=]{20,})"),
        ("accountkey=", "sharedaccesskey=", "sig="),
    ),
    # a GCP service-account file's key id (its private key is the PRIVATE_KEY shape)
    Shape("SECRET", re.compile(r'"private_key_id"\s*:\s*"(?P<value>[a-f0-9]{40})"'), ("private_key_id",)),
    Shape("BEARER", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}=*"), ("bearer",)),
    Shape("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), ("eyj",)),
    # credentials inside a URL: scheme://user:password@host
    Shape(
        "SECRET",
        re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s:/@'\"]+:(?P<value>[^\s@/'\"]{3,})@"),
        ("://",),
    ),
    # password=…, "api_key": "…", token: s3cr3t — the value, not the name; after a colon only what looks
    # like a value (quoted, or with a digit or symbol), so prose ("your password: reset it") reads on
    Shape(
        "SECRET",
        re.compile(
            rf"(?i)\b{_ASSIGNED}[\"']?\s*(?:=|:(?=\s*[\"']|\s*\S*[\d_+/!@#$%^*-]))\s*[\"']?"
            r"(?P<value>[^\s\"',;&{}]{4,})"
        ),
        ("password", "passwd", "pwd", "secret", "token", "api_key", "api-key", "apikey", "access_key", "access-key"),
    ),
)
