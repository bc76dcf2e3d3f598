"""Retrieval over HTTP: ``/v1/collections`` and their documents and search. Routes only: the work
is ``keel.rag``'s, run in worker threads (embedding and SQLite block)."""

from __future__ import annotations

import functools
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import DocumentError, InvalidRequest, KeelError
from keel.gateway.service import GatewayService
from keel.jobs.kinds import ingest_payload
from keel.rag.backends import CollectionNotFound, Collections
from keel.rag.grouping import GroupBy, documents
from keel.rag.ingest import ingest_documents
from keel.rag.loaders import load_bytes
from keel.rag.retrieval import Query, retrieve
from keel.rag.search import Mode
from keel.server.auth import caller_of
from keel.server.errors import refused_record
from keel.server.responses import json_response
from keel.server.validate import COLLECTION, DOCUMENTS_ADD, SEARCH, parse_document, parse_filters
from keel.types import CallContext

DOCUMENTS = ("member", "ingest")  # the roles that may manage documents; search and answers need member


class CollectionRoutes:
    def __init__(
        self, collections: Collections, guard: Any, parse_body: Any, service: GatewayService, jobs: Any = None
    ) -> None:
        self.jobs = jobs  # JobRoutes, when the app runs jobs: "async": true queues the ingest there
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
            return json_response({"object": "list", "data": rows})
        body = await self.parse_body(request)
        COLLECTION.check(body)
        name, spec = body["name"], body.get("rerank")
        options = {"chunk_tokens": body.get("chunk_tokens") or 128, "overlap": body.get("overlap") or 0}
        col = await self.collections.run(lambda: self.collections.get(name, tenant=tenant, create=True, **options))
        if spec is not None:
            await self.collections.run(col.set_rerank, spec)
        return json_response(
            {"name": col.label, "chunk_tokens": col.chunk_tokens, "overlap": col.overlap, "rerank": col.rerank}, 201
        )

    async def documents(self, request: Request) -> Response:
        if request.method == "GET":
            tenant, name = caller_of(request).tenant, request.path_params["name"]
            col = await self.collections.run(lambda: self.collections.get(name, tenant=tenant))
            return json_response({"object": "list", "data": await self.collections.run(col.list_documents)})
        try:
            return await self._add_documents(request)
        except KeelError as exc:
            exc.keel_operation = "ingest"  # type: ignore[attr-defined]  # its refusal row: an ingest failure
            raise

    async def _add_documents(self, request: Request) -> Response:
        caller, name = caller_of(request), request.path_params["name"]
        tenant = caller.tenant
        col = await self.collections.run(lambda: self.collections.get(name, tenant=tenant))
        body = await self.parse_body(request)
        DOCUMENTS_ADD.check(body)
        items = body["documents"]
        decoded = [parse_document(item, i) for i, item in enumerate(items)]
        ids = [d[0] for d in decoded]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("two documents in the request share an id", param="documents")

        if body.get("async"):
            if self.jobs is None:
                raise InvalidRequest("this server runs no jobs (it has no store); ingest without async", param="async")
            webhook = await self.jobs.webhook_of(body)
            return cast(
                Response,
                await self.jobs.enqueue(tenant, "ingest", ingest_payload(name, decoded), webhook=webhook),
            )
        if body.get("webhook") is not None:
            raise InvalidRequest('a webhook tells when a job ends: add "async": true', param="webhook")
        sources = [(i, i, functools.partial(load_bytes, raw, kind, i, i)) for i, kind, raw in decoded]

        def work() -> dict[str, Any]:
            report = ingest_documents(col, sources)
            skipped = [{"id": where, "reason": reason} for where, reason in report.skipped]
            return {
                "indexed": report.indexed,
                "unchanged": report.unchanged,
                "reindexed": report.reindexed,
                "skipped": skipped,
                "chunks": report.chunks,
            }

        done = await self.collections.run(work)
        if done["skipped"]:  # a partial ingest is a failure an admin should see (the Failures page)
            said = "; ".join(f"{d['id']}: {d['reason']}" for d in done["skipped"][:5])
            problem = DocumentError(f"{len(done['skipped'])} of {len(items)} document(s) skipped: {said}")
            rec = refused_record(CallContext(tenant=tenant), "ingest", problem, f"POST {request.url.path}")
            rec.http_status = 200
            self.service.record(rec)
        return json_response(done)

    async def delete_document(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        name, doc_id = request.path_params["name"], request.path_params["doc_id"]
        col = await self.collections.run(lambda: self.collections.get(name, tenant=tenant))
        if not await self.collections.run(col.delete_document, doc_id):
            raise CollectionNotFound(f"no document '{doc_id}' in collection '{name}'")
        return json_response({"id": doc_id, "deleted": True})

    async def search(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        name = request.path_params["name"]
        body = await self.parse_body(request)
        SEARCH.check(body)
        query, top_k, mode = body["query"], body.get("top_k") or 5, body.get("mode") or "hybrid"
        min_score, filters = body.get("min_score"), parse_filters(body.get("filters"))
        col = await self.collections.run(lambda: self.collections.get(name, tenant=tenant))
        group_by = cast(GroupBy, body.get("group_by") or "chunk")
        asked = Query(
            query, top_k=top_k, mode=cast(Mode, mode), min_score=min_score, filters=filters,
            group_by=group_by, per_document=body.get("per_document") or 2,
        )  # fmt: skip
        found = await retrieve(
            col, asked, service=self.service, default_model=self.default_model, tenant=tenant, run=self.collections.run
        )
        data = documents(found) if group_by == "document" else [f.as_dict() for f in found]
        return json_response({"object": "list", "data": data})
