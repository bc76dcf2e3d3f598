"""Errors at the HTTP edge: the OpenAI error JSON shape with the matching status."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import orjson
from starlette.responses import Response

from keel.errors import KeelError
from keel.store.keys import DEFAULT_TENANT
from keel.store.traces import TraceRecord, outcome
from keel.types import CallContext

log = logging.getLogger("keel.server")


def error_body(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, KeelError):
        return {
            "error": {
                "message": exc.message,
                "type": exc.error_type,
                "param": getattr(exc, "param", None),
                "code": exc.code,
            }
        }
    return {
        "error": {
            "message": "internal error; the trace id in x-keel-trace-id has the details",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> Response:
    status = exc.status if isinstance(exc, KeelError) else 500
    if status >= 500 and not isinstance(exc, KeelError):
        log.error("unexpected error: %r", exc, exc_info=exc)
    out = dict(headers or {})
    retry_after = getattr(exc, "retry_after", None)
    if status in (429, 503) and isinstance(retry_after, int | float) and math.isfinite(retry_after):
        out["retry-after"] = str(max(1, math.ceil(retry_after)))
    elif status in (429, 503):
        out["retry-after"] = "1"
    return Response(orjson.dumps(error_body(exc)), status_code=status, media_type="application/json", headers=out)


def refused_record(ctx: CallContext, operation: str, exc: BaseException, where: str) -> TraceRecord:
    """The trace row of a request answered with an error before any call recorded one: who, what
    was refused and why."""
    rec = TraceRecord(
        id=ctx.trace_id,
        ts=ctx.started,
        operation=operation,
        tenant=ctx.tenant or DEFAULT_TENANT,
        user=ctx.user,
        feature=ctx.feature,
        **outcome(exc),
        usage_source="none",
        latency_ms=(time.time() - ctx.started) * 1000,
        notes=[where],
    )
    return rec  # its columns are scrubbed as it is recorded, like every row
