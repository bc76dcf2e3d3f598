"""Settings of the work that runs off the request path: durable jobs, batches, webhooks and review."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from keel.config.base import Strict


class JobsSettings(Strict):
    """Durable jobs: how many run at once in each ``keel serve`` (0: none; ``keel worker`` then runs
    them), and the lease a worker holds and renews while one runs."""

    workers: int = Field(2, ge=0, le=256)
    lease_s: float = Field(30.0, ge=1, le=3600, description="a dead worker's jobs return to the queue after this")
    max_attempts: int = Field(3, ge=1, le=100)


class BatchSettings(Strict):
    """The Batch API (``/v1/files``, ``/v1/batches``): how big an input may be, and how many of one
    batch's lines run at once (each deployment's ``batch.max_concurrency`` caps them further)."""

    max_file_bytes: int = Field(100 * 1024 * 1024, ge=1024, description="an upload above this is a 413")
    max_lines: int = Field(20_000, ge=1, le=1_000_000, description="a batch input with more lines is a 413")
    concurrency: int = Field(8, ge=1, le=256, description="lines of one batch in flight at once")
    file_retention_days: float = Field(30.0, gt=0, description="uploaded and output files are kept this long")


class WebhookSettings(Strict):
    """Webhooks (Standard Webhooks, signed with a secret per endpoint): retried with backoff and
    jitter until ``give_up_h``. A URL on loopback or a private network is refused unless allowed."""

    allow_private: bool = Field(False, description="allow loopback, private and link-local addresses")
    timeout_s: float = Field(10.0, gt=0, le=120)
    give_up_h: float = Field(24.0, gt=0, le=24 * 7)
    first_retry_s: float = Field(5.0, gt=0)
    max_retry_s: float = Field(3600.0, gt=0)


Role = Literal["admin", "member", "reviewer"]


class ReviewQueueSettings(Strict):
    """One review queue's own settings: a webhook told of new items and SLA breaches."""

    webhook: str | None = Field(None, description="POSTed review.item.created and review.sla_breached (signed)")

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(value) > 2048:
            raise ValueError(f"webhook must be an http:// or https:// URL with a host, not {value[:100]!r}")
        if parts.username or parts.password:
            raise ValueError("webhook must not carry credentials; the signature authenticates Keel")
        return value


class ReviewSettings(Strict):
    """Human review (``review:`` in a feature spec routes answers to a queue): how long a claim holds,
    which roles see an item's raw answer rather than the trace's redacted view, and each queue's webhook."""

    claim_minutes: float = Field(15.0, gt=0, le=24 * 60, description="a claim not decided in this time is released")
    raw_roles: list[Role] = Field(
        default_factory=lambda: list[Role](["admin"]),
        description="roles shown a held answer as it is, not as traces keep it",
    )
    sweep_s: float = Field(5.0, gt=0, le=3600, description="how often SLAs are checked")
    queues: dict[str, ReviewQueueSettings] = Field(default_factory=dict)
