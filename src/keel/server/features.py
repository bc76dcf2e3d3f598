"""``POST /v1/features/{name}/run``: run a feature over HTTP (JSON). Routes only; the work is the
feature pipeline's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import InvalidRequest
from keel.features.pipeline import FeaturePipeline
from keel.features.prompts import DEFAULT_LABEL, PromptRegistry
from keel.gateway.service import GatewayService
from keel.server.collections import Collections
from keel.store.sqlite import connect, db_path


class FeatureRoutes:
    def __init__(
        self,
        service: GatewayService,
        collections: Collections,
        root: Path,
        home: Path,
        authenticate: Any,
        parse_body: Any,
    ) -> None:
        self.service = service
        self.collections = collections
        self.root = root
        self.home = home
        self.authenticate = authenticate
        self.parse_body = parse_body

    def routes(self) -> list[Route]:
        return [Route("/v1/features/{name}/run", self.run, methods=["POST"])]

    async def run(self, request: Request) -> Response:
        tenant = self.authenticate(request.headers.get("authorization"))
        body = await self.parse_body(request)
        inputs = body.get("inputs", {})
        if not isinstance(inputs, dict):
            raise InvalidRequest("'inputs' must be an object of name → value", param="inputs")
        user = body.get("user") or request.headers.get("x-keel-user")
        if user is not None and not isinstance(user, str):
            raise InvalidRequest("'user' must be a string", param="user")
        label = body.get("label", DEFAULT_LABEL)
        if not isinstance(label, str):
            raise InvalidRequest("'label' must be a string", param="label")
        registry = PromptRegistry(connect(db_path(self.home)), self.root / "prompts")
        pipeline = FeaturePipeline(
            self.service, self.root, registry, backend=self.collections.backend(), embedder=self.collections.embedder()
        )
        result = await pipeline.run(request.path_params["name"], inputs, user=user, tenant=tenant, label=label)
        data = {
            "feature": result.feature,
            "answer": result.answer,
            "value": result.value,
            "prompt_version": result.prompt_version,
            "prompt_fallback": result.prompt_fallback,
            "model": result.model,
            "trace_id": result.trace_id,
            "cost_usd": result.cost_usd,
            "latency_ms": result.latency_ms,
            "found_nothing": result.found_nothing,
            "attempts": result.attempts,
            "sources": [s.as_dict() for s in result.sources],
            "citations": [{"number": c.number, "valid": c.valid} for c in result.citations],
        }
        return Response(orjson.dumps(data), media_type="application/json", headers={"x-keel-trace-id": result.trace_id})
