"""The error tree. Classes drive policy: retry and fallback match on classes, never on messages.

KeelError                                          HTTP status · OpenAI error code
 ├── UserError                                     a caller or operator mistake; never retried
 │    ├── ConfigError                              keel.yaml, price table, model catalogue (500)
 │    │    └── CheckError                          a check misconfigured, or lacking what it needs
 │    ├── InvalidRequest(param)                    a malformed request (400, names the ``param``)
 │    ├── AuthError                                missing / invalid / revoked key (401)
 │    ├── ModelNotFound                            unknown model or alias (404)
 │    ├── NotFound                                 no such object, or another tenant's (404)
 │    │    ├── FeatureNotFound · CollectionNotFound · TraceNotFound · JobNotFound
 │    │    └── BatchNotFound · FileNotFound · WebhookNotFound · ReviewItemNotFound
 │    ├── JobConflict                              a reused Idempotency-Key, a finished job or batch cancelled (409)
 │    │    └── ReviewConflict                      a review item claimed by another, decided, or its claim run out
 │    ├── UnknownRoute · MethodNotAllowed          404 · 405
 │    ├── PayloadTooLarge                          body over server.max_body_bytes (413)
 │    ├── RequestTimeout                           body not sent within server.body_timeout_s (408)
 │    ├── InputTooLong                             input over a size guard (400 input_too_long)
 │    ├── InjectionBlocked                         the injection guard blocked an input (400)
 │    ├── OutputBlocked                            an output guard blocked the answer (422)
 │    ├── PolicyViolation                          the data policy refused the call (403)
 │    ├── CsrfFailed                               a dashboard form without its CSRF token (403)
 │    ├── DocumentError                            a document that cannot be indexed
 │    └── ModelFileError                           a model file is missing or fails its checksum
 ├── Forbidden                                     the key's role may not do this (403)
 ├── BudgetExceeded(retry_after)                   a hard budget is spent (429 insufficient_quota)
 ├── RateLimitExceeded(retry_after)                a rate limit is reached (429)
 ├── LedgerUnavailable · StoreUnavailable          the ledger / the shared store is unreachable (503)
 ├── JudgeError                                    an LLM judge's reply could not be read
 ├── StructuredOutputError(attempts)               no attempt validated against the schema (502)
 └── ProviderError(status, body, provider)         an upstream fault (502 unless below)
      ├── RateLimited(retry_after)                 429 from upstream
      ├── ContextWindowExceeded                    the prompt does not fit the model (400)
      ├── UpstreamTimeout                          connect / first-token / total deadline passed (504)
      ├── UpstreamUnavailable                      5xx, connection refused or reset
      ├── BadUpstreamResponse                      garbage: malformed JSON, wrong content type
      ├── UpstreamRejected                         4xx the upstream blames on the request (400)
      ├── CircuitOpen                              the breaker refused the call without trying (503)
      ├── Overloaded                               the local concurrency queue is full (503)
      └── StreamInterrupted                        a stream failed after its first token
"""

from __future__ import annotations


class KeelError(Exception):
    """Base of every error Keel raises on purpose."""

    #: HTTP status the edge answers with, and the OpenAI error ``type`` / ``code``.
    status: int = 500
    error_type: str = "server_error"
    code: str | None = "internal_error"  # every error has a code; subclasses name theirs

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UserError(KeelError):
    status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class ConfigError(UserError):
    """Configuration is wrong. The message names the file, line and what is allowed."""

    status = 500
    error_type = "server_error"
    code = "config_error"


class InvalidRequest(UserError):
    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code


class AuthError(UserError):
    status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFound(UserError):
    status = 404
    code = "model_not_found"

    def __init__(self, model: str, available: list[str] | None = None) -> None:
        hint = f" Available: {', '.join(sorted(available))}." if available else ""
        super().__init__(f"The model '{model}' does not exist.{hint}")
        self.param = "model"


class UnknownRoute(UserError):
    status = 404
    code = "unknown_url"


class MethodNotAllowed(UserError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(UserError):
    status = 413
    code = "payload_too_large"


class RequestTimeout(UserError):
    """The client did not send its request body within ``server.body_timeout_s``."""

    status = 408
    code = "request_timeout"


class InputTooLong(UserError):
    """The input is over a size guard (``guards.max_input_tokens``, a feature's ``max_tokens``)."""

    code = "input_too_long"


class InjectionBlocked(UserError):
    """The injection guard blocked an input."""

    code = "prompt_injection"


class ModelFileError(UserError):
    status = 500
    error_type = "server_error"
    code = "model_file_error"


class CheckError(ConfigError):
    """A check is misconfigured (unknown type, missing or wrong parameter) or lacks what it needs."""


class DocumentError(UserError):
    """A document that cannot be indexed; the message says which and why."""

    code = "invalid_document"


class NotFound(UserError):
    """Something asked for by name or id that does not exist — or is another tenant's."""

    status = 404
    code = "not_found"


class FeatureNotFound(NotFound):
    code = "feature_not_found"


class CollectionNotFound(NotFound):
    code = "collection_not_found"


class TraceNotFound(NotFound):
    code = "trace_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class BatchNotFound(NotFound):
    code = "batch_not_found"


class ReviewItemNotFound(NotFound):
    code = "review_item_not_found"


class FileNotFound(NotFound):
    code = "file_not_found"


class WebhookNotFound(NotFound):
    code = "webhook_not_found"


class JobConflict(UserError):
    """A job request that contradicts the job's state: an idempotency key reused for another body,
    a finished job cancelled."""

    status = 409
    code = "conflict"


class ReviewConflict(JobConflict):
    """A review action that lost to another: the item is claimed by someone else, already decided
    or expired, or the caller's claim ran out."""

    code = "review_conflict"


class OutputBlocked(UserError):
    status = 422
    code = "output_blocked"


class PolicyViolation(UserError):
    status = 403
    code = "data_policy"


class CsrfFailed(UserError):
    status = 403
    error_type = "permission_error"
    code = "csrf_failed"


class Forbidden(KeelError):
    status = 403
    error_type = "permission_error"
    code = "forbidden"


class BudgetExceeded(KeelError):
    status = 429
    error_type = "insufficient_quota"
    code = "budget_exceeded"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitExceeded(KeelError):
    status = 429
    error_type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LedgerUnavailable(KeelError):
    status = 503
    code = "ledger_unavailable"


class StoreUnavailable(KeelError):
    """The shared store cannot be reached: requests that need it fail, nothing half-done."""

    status = 503
    code = "store_unavailable"


class JudgeError(KeelError):
    """An LLM judge's reply could not be read as a verdict. An error of the case, never a score."""

    code = "judge_unparseable"


class StructuredOutputError(KeelError):
    """Every attempt returned something that is not valid against the schema."""

    status = 502
    error_type = "upstream_error"
    code = "invalid_structured_output"

    def __init__(self, message: str, attempts: list[str]) -> None:
        super().__init__(message)
        self.attempts = attempts


class ProviderError(KeelError):
    """An upstream fault, carrying what the upstream said."""

    status = 502
    error_type = "upstream_error"
    code = "upstream_error"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.upstream_status = status
        self.body = body


class RateLimited(ProviderError):
    status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ContextWindowExceeded(ProviderError):
    status = 400
    error_type = "invalid_request_error"
    code = "context_length_exceeded"
    retryable = False


class UpstreamTimeout(ProviderError):
    status = 504
    error_type = "timeout_error"
    code = "upstream_timeout"


class UpstreamUnavailable(ProviderError):
    status = 502
    code = "upstream_unavailable"


class BadUpstreamResponse(ProviderError):
    status = 502
    code = "bad_upstream_response"


class UpstreamRejected(ProviderError):
    """The upstream said the request is wrong (4xx other than 429). Not retryable."""

    status = 400
    error_type = "invalid_request_error"
    code = "upstream_rejected"
    retryable = False


class CircuitOpen(ProviderError):
    status = 503
    code = "circuit_open"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Overloaded(ProviderError):
    status = 503
    code = "overloaded"


class StreamInterrupted(ProviderError):
    """A stream failed after its first token: never retried or spliced."""

    status = 502
    code = "stream_interrupted"
    retryable = False
