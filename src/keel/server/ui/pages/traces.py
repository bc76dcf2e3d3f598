"""Traces: filters, keyset pagination, a shareable URL; one trace with its calls, attempts and
feedback, and a feedback form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from keel.errors import TraceNotFound
from keel.server.ui import nav
from keel.store.traces import as_dict, encode_cursor

if TYPE_CHECKING:
    from keel.server.ui import UI

nav(20, "/ui/traces", "Traces")
FILTERS = ("feature", "user", "status", "model", "operation")
PAGE = 50


def routes(ui: UI) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        query = request.query_params
        filters: dict[str, Any] = {k: query.get(k) or None for k in FILTERS}
        tenant, cursor = ui.tenant_for(request), query.get("cursor") or None
        rows = await ui.store.db.call(
            lambda: ui.store.traces.find(tenant=tenant, limit=PAGE + 1, cursor=cursor, **filters)
        )
        page, more = rows[:PAGE], len(rows) > PAGE
        kept = {k: v for k, v in {**filters, "tenant": query.get("tenant")}.items() if v}
        following = f"/ui/traces?{urlencode({**kept, 'cursor': encode_cursor(page[-1])})}" if more and page else None
        return ui.render(request, "traces.html", rows=page, filters=filters, following=following)

    async def detail(request: Request) -> Response:
        trace_id, tenant = request.path_params["trace_id"], ui.tenant_for(request)

        def load() -> dict[str, Any]:
            rec = ui.store.traces.get(trace_id, tenant=tenant)
            if rec is None:
                raise TraceNotFound(f"no trace '{trace_id}'")
            return {
                "rec": as_dict(rec),
                "children": [as_dict(c) for c in ui.store.traces.children(rec.id, tenant=tenant)],
                "feedback": ui.store.feedback.for_trace(rec.id, tenant=tenant),
            }

        return ui.render(request, "trace.html", **await ui.store.db.call(load), saved=request.query_params.get("saved"))

    async def feedback(request: Request) -> Response:
        form = await ui.form(request)
        trace_id, tenant = request.path_params["trace_id"], ui.tenant_for(request)
        value: Any = {"yes": True, "no": False}.get(str(form.get("value")), form.get("value") or None)
        comment = str(form.get("comment") or "") or None
        add = ui.store.feedback.add
        await ui.store.db.call(lambda: add(trace_id, "helpful", value, tenant=tenant, comment=comment))
        return RedirectResponse(f"/ui/traces/{trace_id}?saved=1", status_code=303)

    return [
        Route("/ui/traces", ui.page(listing), methods=["GET"]),
        Route("/ui/traces/{trace_id}", ui.page(detail), methods=["GET"]),
        Route("/ui/traces/{trace_id}/feedback", ui.page(feedback), methods=["POST"]),
    ]
