"""Typed settings: one source (keel.yaml, or the built-in default), validated with precise errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from keel.config.base import Secret, Strict
from keel.config.jobs import BatchSettings, JobsSettings, ReviewSettings, WebhookSettings
from keel.config.monitors import GatewayMonitor
from keel.config.secrets import SecretRef


class Timeouts(Strict):
    connect: float = Field(5.0, gt=0, description="seconds to open a connection")
    first_token: float = Field(60.0, gt=0, description="seconds until the first byte / token")
    total: float = Field(300.0, gt=0, description="seconds for the whole call")


class BreakerSettings(Strict):
    failures: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    cooldown_s: float = Field(15.0, gt=0, description="seconds open before a half-open probe")
    probes: int = Field(1, ge=1, description="successful probes that close it again")


class RetrySettings(Strict):
    attempts: int = Field(3, ge=1, le=20, description="tries per deployment, the first included")
    deadline_s: float = Field(60.0, gt=0, description="no retry starts after this many seconds")
    base_delay_s: float = Field(0.25, ge=0)
    max_delay_s: float = Field(8.0, ge=0)
    max_retry_after_s: float = Field(30.0, ge=0, description="a longer Retry-After is not waited for")
    resume_streams: bool = Field(
        False, description="continue a stream cut after its first token, so the client sees one answer"
    )
    resume_attempts: int = Field(2, ge=1, le=10, description="with resume_streams: continuations per stream")


FallbackOn = Literal["rate_limit", "server_error", "timeout", "context_window", "circuit_open", "overloaded"]


DEFAULT_FALLBACK_ON: tuple[FallbackOn, ...] = ("rate_limit", "server_error", "timeout", "circuit_open", "overloaded")


class LocalModelSettings(Strict):
    """A GGUF model: a file path, or parts shipped inside installed Python packages."""

    path: Path | None = None
    parts: list[str] = Field(default_factory=list, description="'package/relative/file' in order")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    context_window: int = Field(4096, ge=128)
    n_parallel: int = Field(2, ge=1, le=64)
    threads: int | None = Field(None, ge=1)
    chat_template: str | None = None
    hf_repo: str | None = Field(None, description="hub-style source; used only with allow_download")
    hf_file: str | None = None
    allow_download: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> LocalModelSettings:
        if not (self.path or self.parts or self.hf_repo):
            raise ValueError("give one of path, parts or hf_repo")
        return self


class DeploymentBatchSettings(Strict):
    """How a deployment serves Batch API lines: at a discount (its provider's batch price), and with
    at most ``max_concurrency`` of them in flight, so batches never take the slots of interactive calls."""

    discount: float = Field(0.0, ge=0, le=1, description="share off the price for batch lines (0.5: half price)")
    max_concurrency: int = Field(4, ge=1, description="batch lines in flight on this deployment at once")


class DeploymentSettings(Strict):
    provider: str = Field(description="adapter name: openai, anthropic, local, onnx-embed, or a plugin")
    model: str = Field(description="the upstream model name, or a local model from local_models")
    base_url: str | None = None
    api_key: Secret = None
    headers: dict[str, str] = Field(default_factory=dict)
    context_window: int | None = Field(None, ge=1)
    max_output_tokens: int | None = Field(None, ge=1)
    timeout: Timeouts = Timeouts()
    breaker: BreakerSettings = BreakerSettings()
    max_concurrency: int = Field(64, ge=1)
    max_queue: int = Field(256, ge=0, description="calls that may wait for a free slot")
    queue_timeout_s: float = Field(30.0, gt=0)
    price_model: str | None = Field(None, description="price-table key, if not the model name")
    batch: DeploymentBatchSettings = DeploymentBatchSettings()


class AliasSettings(Strict):
    """A name clients ask for: an ordered chain of deployments with its retry and fallback policy."""

    deployments: list[str] = Field(min_length=1)
    retry: RetrySettings = RetrySettings()
    fallback_on: list[FallbackOn] = Field(default_factory=lambda: list(DEFAULT_FALLBACK_ON))
    context_fallback: str | None = Field(None, description="alias for prompts that exceed the window")
    description: str = ""


class ServerSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    auth: bool = True
    auth_cache_s: float = Field(
        1.0, ge=0, description="how long a key lookup is reused; revocations by another process take effect within this"
    )
    body_timeout_s: float = Field(30.0, gt=0, le=3600, description="a request body not read in full by then: 408")
    header_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="a connection that has not sent a request's headers by then is closed"
    )
    max_connections: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="open connections per process; beyond, the oldest one still sending headers is closed (or 503)",
    )
    keep_alive_s: float = Field(5.0, gt=0, le=600, description="an idle keep-alive connection is closed after this")
    session_secret: Secret = Field(
        None, description='{"$env": VAR}: signs dashboard sessions (shared by replicas); else one per KEEL_HOME'
    )
    stream_write_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="a feature stream whose client has not taken a write for this long is cut"
    )


class OtlpSettings(Strict):
    """Export spans and the GenAI metrics over OTLP/HTTP to a collector (Langfuse, Phoenix, Jaeger, an
    OpenTelemetry Collector…). Needs ``keel[otel]``."""

    endpoint: str | None = Field(
        None, description="e.g. http://collector:4318 (None: the standard OTEL_EXPORTER_OTLP_* variables)"
    )
    headers: dict[str, Secret] = Field(default_factory=dict, description='e.g. {authorization: {"$env": VAR}}')
    protocol: Literal["http/protobuf"] = "http/protobuf"
    capture_content: bool = Field(
        False, description="add gen_ai.input.messages / gen_ai.output.messages, as tracing.capture left them"
    )
    timeout_s: float = Field(10.0, gt=0, le=120)

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("the OTLP endpoint must be an http(s) URL, e.g. http://localhost:4318")
        return value


class TracingSettings(Strict):
    capture: Literal["off", "redacted", "full"] = "redacted"
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(256, ge=1)
    flush_interval_s: float = Field(0.1, gt=0, description="group commit: rows reach the store within this")
    journal: bool = Field(
        True, description="crash journal: calls in flight and unstored rows survive a kill -9 and settle at start-up"
    )
    otel: bool = Field(
        False,
        description="spans through OpenTelemetry: an application's SDK provider if it installed one, else Keel's "
        "own exporting to the standard OTEL_EXPORTER_OTLP_* variables",
    )
    otlp: OtlpSettings | None = None


class StoreSettings(Strict):
    """Where all state lives: keys, traces, feedback, prompts, experiments, evals, caches and (without
    Redis) the budget ledger. Embedded: one SQLite file under KEEL_HOME. Postgres: shared by every
    replica and worker."""

    backend: Literal["embedded", "postgres"] = "embedded"
    url: Secret = Field(None, description='{"$env": "VAR"} holding a postgresql:// URL')
    retention_days: float | None = Field(
        None, gt=0, description="delete traces older than this (in bounded batches); keep them all by default"
    )


class RetrievalSettings(Strict):
    backend: Literal["embedded", "postgres"] | None = Field(
        None, description="where collections live; the store's backend by default"
    )
    postgres_url: Secret = Field(None, description='{"$env": "VAR"} holding a postgresql:// URL; store.url by default')
    embedder: str | None = Field(
        None, description="an alias or deployment serving embeddings (via the gateway); the local MiniLM by default"
    )


class ScoreConfig(Strict):
    """What one feedback name accepts, and which of its values count as a bad answer (the ones
    ``keel evals promote --from-feedback`` turns into eval cases)."""

    type: Literal["boolean", "numeric", "categorical", "text"]
    min: float | None = None
    max: float | None = None
    low_below: float | None = Field(None, description="numeric: values below this are a bad answer")
    values: list[str] = Field(default_factory=list, description="categorical: the allowed categories")
    low: list[str] = Field(default_factory=list, description="categorical: the categories that mean a bad answer")
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ScoreConfig:
        numeric = ("min", "max", "low_below")
        if self.type != "numeric" and any(getattr(self, k) is not None for k in numeric):
            raise ValueError(f"min, max and low_below are for numeric scores, not {self.type}")
        if self.type != "categorical" and (self.values or self.low):
            raise ValueError(f"values and low are for categorical scores, not {self.type}")
        if self.type == "numeric":
            if self.min is not None and self.max is not None and self.min >= self.max:
                raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
            low, high = -math.inf if self.min is None else self.min, math.inf if self.max is None else self.max
            if self.low_below is not None and not low <= self.low_below <= high:
                raise ValueError("low_below must lie between min and max")
        if self.type == "categorical":
            if not self.values:
                raise ValueError("a categorical score lists its values")
            unknown = sorted(set(self.low) - set(self.values))
            if unknown:
                raise ValueError(f"low names categories that are not in values: {unknown}")
        return self


Dimension = Literal["tenant", "key", "user", "feature", "model"]


class BudgetSettings(Strict):
    """Spend allowed over a day or a month (UTC), in USD and/or tokens, for the calls it ``match``es —
    once in all, or once ``per`` tenant, key, user, feature or model."""

    match: dict[Dimension, str] = Field(default_factory=dict, description="e.g. {tenant: acme, feature: chat}")
    per: Dimension | None = Field(None, description="each user (say) gets their own budget of this size")
    period: Literal["day", "month"] = "day"
    usd: float | None = Field(None, gt=0, le=10_000_000)
    tokens: int | None = Field(None, gt=0, le=10**13)
    mode: Literal["hard", "soft"] = Field("hard", description="hard: refuse over budget; soft: alert only")
    alerts: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0], description="shares of the budget")
    webhook: str | None = Field(None, description="POSTed a JSON alert when a share is crossed")
    require: bool = Field(
        False, description="refuse calls that name no `per` value (no user) instead of counting them per API key"
    )

    @model_validator(mode="after")
    def _amount(self) -> BudgetSettings:
        if self.usd is None and self.tokens is None:
            raise ValueError("a budget needs usd or tokens (or both)")
        if any(not 0 < a <= 1 for a in self.alerts):
            raise ValueError(f"alerts are shares of the budget in (0, 1], not {self.alerts}")
        if self.require and self.per is None:
            raise ValueError("require: true needs per: (the dimension every call must name)")
        if self.per is not None and self.per in self.match:
            raise ValueError(f"per: {self.per} and match on {self.per} contradict each other")
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise ValueError("webhook must be an http(s) URL")
        return self


class RateLimitSettings(Strict):
    """Requests and tokens per minute for the calls it ``match``es, once in all or ``per`` key, user,
    model…; over it a call gets 429 with ``Retry-After``."""

    match: dict[Dimension, str] = Field(default_factory=dict)
    per: Dimension | None = None
    rpm: int | None = Field(None, gt=0, le=10_000_000)
    tpm: int | None = Field(None, gt=0, le=10**11)

    @model_validator(mode="after")
    def _amount(self) -> RateLimitSettings:
        if self.rpm is None and self.tpm is None:
            raise ValueError("a rate limit needs rpm or tpm (or both)")
        if self.per is not None and self.per in self.match:
            raise ValueError(f"per: {self.per} and match on {self.per} contradict each other")
        return self


class LedgerSettings(Strict):
    """Where budgets and rate limits keep count: in this process and SQLite (one replica), or Redis
    (every replica sees the same counts)."""

    backend: Literal["embedded", "redis"] = "embedded"
    redis_url: Secret = Field(None, description='{"$env": "VAR"} holding a redis:// URL')
    on_error: Literal["closed", "open"] = Field(
        "closed", description="when Redis is unreachable: refuse calls (closed) or let them through (open)"
    )
    reservation_ttl_s: float = Field(600, gt=0, le=86_400, description="a crashed call's reservation expires")


PII_KINDS = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "SECRET", "PERSON", "LOCATION", "ADDRESS")


class DataPolicySettings(Strict):
    """Which kinds of personal data may leave the machine, to which provider. Local models may see
    everything; a deployment or provider kind not listed may see ``default`` (places only, unless said)."""

    enabled: bool = True
    default: list[str] = Field(
        default_factory=lambda: ["LOCATION"],
        description="kinds any unlisted remote deployment may see: places by default (a question about "
        "Mongolia means nothing with <LOCATION_1> in it); [] to withhold them too",
    )
    allow: dict[str, list[str]] = Field(
        default_factory=dict, description="deployment name or provider kind → kinds it may see (or [all])"
    )
    on_violation: Literal["redact", "reroute", "block"] = "redact"
    reroute_to: str | None = Field(None, description="with on_violation: reroute, a model alias on local deployments")
    names: bool = Field(
        True, description="look for names and places in user turns too (spaCy, ~5 ms when a name could be there)"
    )

    @model_validator(mode="after")
    def _kinds(self) -> DataPolicySettings:
        for where, kinds in [("default", self.default), *((f"allow.{k}", v) for k, v in self.allow.items())]:
            unknown = sorted(set(kinds) - {*PII_KINDS, "all"})
            if unknown:
                raise ValueError(f"{where}: unknown kind(s) {unknown}; kinds: {', '.join(PII_KINDS)} or all")
        if self.on_violation == "reroute" and not self.reroute_to:
            raise ValueError("on_violation: reroute needs reroute_to (a model alias on local deployments)")
        return self


class InjectionGuardSettings(Strict):
    action: Literal["block", "flag"] = "block"
    threshold: float | None = Field(None, gt=0, lt=1, description="default: the trained model's")


class GatewayGuardSettings(Strict):
    """Guards for raw chat calls (features declare their own): the last user message screened for
    prompt injection; requests over a size refused before anything is sent."""

    injection: InjectionGuardSettings | None = None
    max_input_tokens: int | None = Field(None, ge=1, le=10_000_000)


class FeedbackSettings(Strict):
    scores: dict[str, ScoreConfig] = Field(default_factory=dict)
    strict: bool = Field(True, description="refuse feedback names not in scores (when any are configured)")


class KeelSettings(Strict):
    home: Path | None = Field(None, description="data directory; KEEL_HOME or ~/.keel by default")
    server: ServerSettings = ServerSettings()
    tracing: TracingSettings = TracingSettings()
    store: StoreSettings = StoreSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    data_policy: DataPolicySettings = DataPolicySettings()
    guards: GatewayGuardSettings = GatewayGuardSettings()
    budgets: dict[str, BudgetSettings] = Field(default_factory=dict)
    limits: dict[str, RateLimitSettings] = Field(default_factory=dict)
    ledger: LedgerSettings = LedgerSettings()
    jobs: JobsSettings = JobsSettings()
    batches: BatchSettings = BatchSettings()
    webhooks: WebhookSettings = WebhookSettings()
    review: ReviewSettings = ReviewSettings()
    monitors: dict[str, GatewayMonitor] = Field(
        default_factory=dict, description="drift on raw gateway traffic (features declare their own)"
    )
    prices: Path | None = Field(None, description="a price table overriding the built-in one")
    project_root: Path = Field(Path("."), description="the folder holding features/, prompts/ and schemas/")
    local_models: dict[str, LocalModelSettings] = Field(default_factory=dict)
    deployments: dict[str, DeploymentSettings] = Field(default_factory=dict)
    models: dict[str, AliasSettings] = Field(default_factory=dict)
    default_model: str | None = None
    modes: dict[str, str] = Field(
        default_factory=dict, description="what a request's mode means: e.g. {fast: small, accurate: large}"
    )

    @property
    def retrieval_backend(self) -> Literal["embedded", "postgres"]:
        """Where collections live: retrieval's own switch, else the store's backend."""
        return self.retrieval.backend or self.store.backend

    @property
    def retrieval_url(self) -> SecretRef | None:
        return self.retrieval.postgres_url or (self.store.url if self.store.backend == "postgres" else None)

    def model_for_mode(self, mode: object) -> str:
        """The alias a request's ``mode`` (fast, accurate, …) maps to; a clear error otherwise."""
        from keel.errors import InvalidRequest

        if not isinstance(mode, str) or mode not in self.modes:
            known = ", ".join(sorted(self.modes)) or "none are configured (keel.yaml modes:)"
            raise InvalidRequest(f"unknown mode {mode!r}; modes: {known}", param="mode")
        return self.modes[mode]
