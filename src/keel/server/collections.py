"""Retrieval over HTTP: ``/v1/collections`` and their documents and search. Routes only: the work
is ``keel.rag``'s, run in worker threads (embedding and SQLite block)."""

from __future__ import annotations

import functools
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import InvalidRequest
from keel.gateway.service import GatewayService
from keel.rag.backends import CollectionNotFound, Collections
from keel.rag.ingest import ingest_documents
from keel.rag.loaders import load_bytes
from keel.rag.retrieval import Query, retrieve
from keel.server.auth import caller_of
from keel.server.validate import bounded_int, parse_document, parse_filters

MAX_DOCUMENTS_PER_REQUEST = 100
DOCUMENTS = ("member", "ingest")  # the roles that may manage documents; search and answers need member


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class CollectionRoutes:
    def __init__(self, collections: Collections, guard: Any, parse_body: Any, service: GatewayService) -> None:
        self.collections = collections
        self.service = service
        self.default_model = service.gateway.settings.default_model or "local"
        self.guard = guard
        self.parse_body = parse_body

    def routes(self) -> list[Route]:
        return [
            Route("/v1/collections", self.guard(self.list_or_create, DOCUMENTS), methods=["GET", "POST"]),
            Route("/v1/collections/{name}/documents", self.guard(self.documents, DOCUMENTS), methods=["GET", "POST"]),
            Route(
                "/v1/collections/{name}/documents/{doc_id:path}",
                self.guard(self.delete_document, DOCUMENTS),
                methods=["DELETE"],
            ),
            Route("/v1/collections/{name}/search", self.guard(self.search), methods=["POST"]),
        ]

    async def list_or_create(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        if request.method == "GET":
            rows = await self.collections.run(lambda: self.collections.backend().list(tenant))
            return _json({"object": "list", "data": rows})
        body = await self.parse_body(request)
        name = body.get("name")
        if not isinstance(name, str):
            raise InvalidRequest("'name' must be a string", param="name")
        options = {
            "chunk_tokens": bounded_int(body, "chunk_tokens", 128, 16, 256),
            "overlap": bounded_int(body, "overlap", 0, 0, 128),
        }
        spec = body.get("rerank")
        if spec is not None and not isinstance(spec, str):
            raise InvalidRequest("'rerank' must be a string", param="rerank")
        col = await self.collections.run(lambda: self.collections.get(name, tenant=tenant, create=True, **options))
        if spec is not None:
            await self.collections.run(col.set_rerank, spec)
        return _json(
            {"name": col.label, "chunk_tokens": col.chunk_tokens, "overlap": col.overlap, "rerank": col.rerank}, 201
        )

    async def documents(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        name = request.path_params["name"]
        col = await self.collections.run(lambda: self.collections.get(name, tenant=tenant))
        if request.method == "GET":
            rows = await self.collections.run(col.list_documents)
            return _json({"object": "list", "data": rows})
        body = await self.parse_body(request)
        items = body.get("documents")
        if not isinstance(items, list) or not items:
            raise InvalidRequest("'documents' must be a non-empty array", param="documents")
        if len(items) > MAX_DOCUMENTS_PER_REQUEST:
            raise InvalidRequest(f"send at most {MAX_DOCUMENTS_PER_REQUEST} documents per request", param="documents")
        decoded = [parse_document(item, i) for i, item in enumerate(items)]
        ids = [d[0] for d in decoded]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("two documents in the request share an id", param="documents")

        sources = [(i, i, functools.partial(load_bytes, raw, kind, i, i)) for i, kind, raw in decoded]

        def work() -> dict[str, Any]:
            report = ingest_documents(col, sources)
            skipped = [{"id": where, "reason": reason} for where, reason in report.skipped]
            return {
                "indexed": report.indexed,
                "unchanged": report.unchanged,
                "skipped": skipped,
                "chunks": report.chunks,
            }

        return _json(await self.collections.run(work))

    async def delete_document(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        name, doc_id = request.path_params["name"], request.path_params["doc_id"]
        col = await self.collections.run(lambda: self.collections.get(name, tenant=tenant))
        if not await self.collections.run(col.delete_document, doc_id):
            raise CollectionNotFound(f"no document '{doc_id}' in collection '{name}'")
        return _json({"id": doc_id, "deleted": True})

    async def search(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        name = request.path_params["name"]
        body = await self.parse_body(request)
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequest("'query' must be a non-empty string", param="query")
        top_k = bounded_int(body, "top_k", 5, 1, 1000)
        mode = body.get("mode", "hybrid")
        if mode not in ("hybrid", "keyword", "vector"):
            raise InvalidRequest("'mode' must be hybrid, keyword or vector", param="mode")
        min_score = body.get("min_score")
        if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, int | float)):
            raise InvalidRequest("'min_score' must be a number", param="min_score")
        filters = parse_filters(body.get("filters"))
        col = await self.collections.run(lambda: self.collections.get(name, tenant=tenant))
        asked = Query(query, top_k=top_k, mode=mode, min_score=min_score, filters=filters)
        found = await retrieve(
            col, asked, service=self.service, default_model=self.default_model, tenant=tenant, run=self.collections.run
        )
        return _json({"object": "list", "data": [f.as_dict() for f in found]})
