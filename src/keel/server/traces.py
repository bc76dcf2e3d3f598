"""Traces over HTTP, always within the caller's tenant: ``GET /v1/traces`` (filters, newest first,
cursor pagination) and ``GET /v1/traces/{id}`` with its child calls and feedback. Routes only; the
work is the trace repository's."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import InvalidRequest, UserError
from keel.server.auth import caller_of
from keel.server.responses import json_response
from keel.store import Store
from keel.store.feedback import TraceNotFound
from keel.store.traces import FILTERS, TraceRecord, as_dict, encode_cursor
from keel.timespan import parse_since

MAX_PAGE = 200
QUERY = {"limit", "cursor", "since", *FILTERS}


def _summary(rec: TraceRecord) -> dict[str, Any]:
    """A trace without its captured request and response (what a list shows)."""
    data = as_dict(rec)
    data.pop("request", None)
    data.pop("response", None)
    return data


def _since(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return parse_since(raw)
    except UserError:
        raise InvalidRequest("'since' takes a span like 7d, 24h, 30m, or an ISO date", param="since") from None


class TraceRoutes:
    def __init__(self, store: Store, guard: Any) -> None:
        self.store = store
        self.guard = guard

    def routes(self) -> list[Route]:
        return [
            Route("/v1/traces", self.guard(self.list), methods=["GET"]),
            Route("/v1/traces/{trace_id}", self.guard(self.show), methods=["GET"]),
        ]

    async def list(self, request: Request) -> Response:
        caller = caller_of(request)
        query = request.query_params
        unknown = sorted(set(query) - QUERY)
        if unknown:
            raise InvalidRequest(f"unknown query parameter(s) {unknown}; use {sorted(QUERY)}", param=unknown[0])
        raw_limit = query.get("limit", "50")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
            raise InvalidRequest(f"'limit' is an integer from 1 to {MAX_PAGE}", param="limit")
        limit = int(raw_limit)
        filters: dict[str, Any] = {k: query.get(k) for k in FILTERS if k != "tenant"}
        tenant: str | None = caller.tenant
        if query.get("tenant") not in (None, caller.tenant):
            if not caller.admin:
                raise InvalidRequest("only admin keys may read another tenant's traces", param="tenant")
            tenant = None if query.get("tenant") == "*" else query.get("tenant")
        since, cursor = _since(query.get("since")), query.get("cursor")
        rows = await self.store.db.call(
            lambda: self.store.traces.find(tenant=tenant, limit=limit + 1, since=since, cursor=cursor, **filters)
        )
        page, more = rows[:limit], len(rows) > limit
        body = {
            "object": "list",
            "data": [_summary(r) for r in page],
            "has_more": more,
            "next_cursor": encode_cursor(page[-1]) if more and page else None,
        }
        return json_response(body)

    async def show(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        trace_id = request.path_params["trace_id"]

        def load() -> dict[str, Any]:
            rec = self.store.traces.get(trace_id, tenant=tenant)
            if rec is None:
                raise TraceNotFound(f"no trace '{trace_id}'")
            data = as_dict(rec)
            data["spans"] = [_summary(c) for c in self.store.traces.children(rec.id, tenant=tenant)]
            data["feedback"] = [
                {"name": f.name, "value": f.value, "label": f.label, "comment": f.comment, "at": f.at}
                for f in self.store.feedback.for_trace(rec.id, tenant=tenant)
            ]
            return data

        return json_response(await self.store.db.call(load))
