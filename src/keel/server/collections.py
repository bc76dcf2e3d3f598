"""Retrieval over HTTP: ``/v1/collections`` and their documents and search. Routes only: the work
is ``keel.rag``'s, run in worker threads (embedding and SQLite block)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import InvalidRequest
from keel.gateway.service import GatewayService
from keel.rag.backends import CollectionNotFound, Collections
from keel.rag.loaders import DocumentError, load_bytes
from keel.rag.rerank import candidate_pool, rerank_top
from keel.rag.search import Filters
from keel.server.auth import caller_of

MAX_DOCUMENTS_PER_REQUEST = 100
DOCUMENTS = ("member", "ingest")  # the roles that may manage documents; search and answers need member


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _int(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be an integer from {low} to {high} (got {value!r})", param=key)
    return value


def _decode_document(item: Any, index: int) -> tuple[str, str, bytes]:
    where = f"documents[{index}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"'{where}' must be an object", param=where)
    doc_id = item.get("id")
    if not isinstance(doc_id, str) or not doc_id.strip() or len(doc_id) > 512:
        raise InvalidRequest(f"'{where}.id' must be a non-empty string of at most 512 characters", param=f"{where}.id")
    kind = item.get("kind", "txt")
    if kind not in ("md", "txt", "html", "pdf"):
        raise InvalidRequest(f"'{where}.kind' must be md, txt, html or pdf", param=f"{where}.kind")
    if isinstance(item.get("text"), str):
        return doc_id, kind, item["text"].encode("utf-8")
    if isinstance(item.get("content_base64"), str):
        try:
            return doc_id, kind, base64.b64decode(item["content_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                f"'{where}.content_base64' is not valid base64", param=f"{where}.content_base64"
            ) from None
    raise InvalidRequest(f"'{where}' needs 'text' or 'content_base64'", param=where)


def _filters(raw: Any) -> Filters | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"doc_ids", "doc_prefix", "kinds"}:
        raise InvalidRequest("'filters' takes doc_ids (array), doc_prefix (string) and kinds (array)", param="filters")
    doc_ids, prefix, kinds = raw.get("doc_ids"), raw.get("doc_prefix"), raw.get("kinds")
    for key, value in (("doc_ids", doc_ids), ("kinds", kinds)):
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise InvalidRequest(f"'filters.{key}' must be an array of strings", param=f"filters.{key}")
    if prefix is not None and not isinstance(prefix, str):
        raise InvalidRequest("'filters.doc_prefix' must be a string", param="filters.doc_prefix")
    return Filters(
        frozenset(doc_ids) if doc_ids is not None else None, prefix, frozenset(kinds) if kinds is not None else None
    )


class CollectionRoutes:
    def __init__(self, collections: Collections, guard: Any, parse_body: Any, service: GatewayService) -> None:
        self.collections = collections
        self.service = service
        self.tracer = service.tracer
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
            "chunk_tokens": _int(body, "chunk_tokens", 128, 16, 256),
            "overlap": _int(body, "overlap", 0, 0, 128),
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
        decoded = [_decode_document(item, i) for i, item in enumerate(items)]
        ids = [d[0] for d in decoded]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("two documents in the request share an id", param="documents")

        def work() -> dict[str, Any]:
            report: dict[str, Any] = {"indexed": [], "unchanged": [], "skipped": [], "chunks": 0}
            for doc_id, kind, raw in decoded:
                try:
                    doc = load_bytes(raw, kind, doc_id, doc_id)
                except DocumentError as exc:
                    report["skipped"].append({"id": doc_id, "reason": exc.message.removeprefix(f"{doc_id}: ")})
                    continue
                if col.document_hash(doc.id) == doc.hash:
                    report["unchanged"].append(doc_id)
                else:
                    report["chunks"] += col.index_document(doc)
                    report["indexed"].append(doc_id)
            return report

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
        top_k = _int(body, "top_k", 5, 1, 1000)
        mode = body.get("mode", "hybrid")
        if mode not in ("hybrid", "keyword", "vector"):
            raise InvalidRequest("'mode' must be hybrid, keyword or vector", param="mode")
        min_score = body.get("min_score")
        if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, int | float)):
            raise InvalidRequest("'min_score' must be a number", param="min_score")
        filters = _filters(body.get("filters"))
        col = await self.collections.run(lambda: self.collections.get(name, tenant=tenant))
        pool = candidate_pool(top_k, col.rerank)
        found = await self.collections.run(
            lambda: col.search(query, top_k=pool, mode=mode, min_score=min_score, tracer=self.tracer, filters=filters)
        )
        found = await rerank_top(
            col.rerank, query, found, top_k, service=self.service, default_model=self.default_model, tenant=tenant
        )
        return _json({"object": "list", "data": [f.as_dict() for f in found]})
