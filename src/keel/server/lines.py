"""One Batch API line as the matching HTTP route would answer it, without HTTP: the same parsing,
gateway guards, modes and calls as ``/v1/chat/completions`` and ``/v1/embeddings``, answered as
``(status, body)`` with errors in the OpenAI shape. A line refused before it reached the gateway
leaves a trace row like any refused request."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from keel.errors import InvalidRequest, KeelError
from keel.gateway.service import GatewayService
from keel.jobs.batches import Caller
from keel.server.errors import error_body, refused_record
from keel.server.guards import guard_chat
from keel.server.validate import parse_chat, parse_embeddings
from keel.types import CallContext


def embeddings_body(response: Any, model: str, fmt: str) -> dict[str, Any]:
    body: dict[str, Any] = response.to_openai(model)
    if fmt == "base64":
        for item in body["data"]:
            item["embedding"] = base64.b64encode(np.asarray(item["embedding"], dtype="<f4").tobytes()).decode()
    return body


def line_caller(service: GatewayService) -> Caller:
    async def call(endpoint: str, body: dict[str, Any], ctx: CallContext) -> tuple[int, dict[str, Any]]:
        operation = "chat" if endpoint == "/v1/chat/completions" else "embeddings"
        try:
            if operation == "chat":
                req, _ = parse_chat(body, ctx)
                if req.stream:
                    raise InvalidRequest("a batch line cannot stream; drop 'stream'", param="stream")
                guard_chat(service.gateway.settings.guards, req)
                return 200, (await service.chat(req)).body
            ereq, fmt = parse_embeddings(body, ctx)
            return 200, embeddings_body(await service.embed(ereq), ereq.model, fmt)
        except KeelError as exc:
            if ctx.record is None:  # refused before the gateway: a row says so, under the line's trace id
                rec = refused_record(ctx, operation, exc, f"batch {ctx.batch}")
                rec.http_status = exc.status
                service.record(rec)
                ctx.record = rec
            return exc.status, error_body(exc)

    return call
