"""Traces: filters, keyset pagination, a shareable URL; one trace as its span tree and timeline (the
run's steps — guards, cache, retrieval with the chunks and their scores, prompt, generation, output
guards and confidence — and each model call with its attempts), with feedback, and the actions that
send it to review or make it an eval case."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from keel.errors import InvalidRequest, TraceNotFound
from keel.review import ReviewQueue
from keel.server.ui import nav
from keel.server.ui.cases import make_case, suites_for
from keel.store.traces import as_dict, encode_cursor

if TYPE_CHECKING:
    from keel.server.ui import UI

nav(20, "/ui/traces", "Traces")
FILTERS = ("feature", "user", "status", "model", "operation", "error_type")
NUMBERS = ("min_cost", "min_latency_ms")
STATUSES = ("", "ok", "error", "cancelled", "interrupted")
PAGE = 50


def routes(ui: UI) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        query = request.query_params
        filters: dict[str, Any] = {k: _text(query.get(k)) for k in FILTERS}
        if (filters["status"] or "") not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(s for s in STATUSES if s)}")
        numbers = {k: _number(query.get(k), k) for k in NUMBERS}
        tenant, cursor, text = ui.tenant_for(request), query.get("cursor") or None, _text(query.get("text"))
        find = ui.store.traces.find
        rows = await ui.store.db.call(
            lambda: find(
                tenant=tenant,
                limit=PAGE + 1,
                cursor=cursor,
                text=text,
                min_cost=numbers["min_cost"],
                min_latency_ms=numbers["min_latency_ms"],
                **filters,
            )
        )
        page, more = rows[:PAGE], len(rows) > PAGE
        shown = {**filters, "text": text, **numbers}
        kept = {k: v for k, v in {**shown, "tenant": query.get("tenant")}.items() if v is not None}
        following = f"/ui/traces?{urlencode({**kept, 'cursor': encode_cursor(page[-1])})}" if more and page else None
        shared = f"/ui/traces?{urlencode(kept)}"
        return ui.render(request, "traces.html", rows=page, filters=shown, following=following, shared=shared)

    async def detail(request: Request) -> Response:
        trace_id, tenant = request.path_params["trace_id"], ui.tenant_for(request)

        def load() -> dict[str, Any]:
            rec = ui.store.traces.get(trace_id, tenant=tenant)
            if rec is None:
                raise TraceNotFound(f"no trace '{trace_id}'")
            children = [as_dict(c) for c in ui.store.traces.children(rec.id, tenant=tenant)]
            shown = as_dict(rec)
            feature_run = rec.operation == "feature"
            return {
                "rec": shown,
                "children": children,
                "tree": timeline(shown, children),
                "steps": {s["name"]: s for s in rec.steps or []},
                "feedback": ui.store.feedback.for_trace(rec.id, tenant=tenant),
                "suites": suites_for(ui.settings.project_root, rec.feature) if feature_run else [],
                "queues": sorted(ReviewQueue(ui.store, ui.settings, ui.settings.project_root).queues())
                if feature_run
                else [],
            }

        return ui.render(request, "trace.html", **await ui.store.db.call(load), saved=request.query_params.get("saved"))

    async def feedback(request: Request) -> Response:
        form = await ui.form(request)
        trace_id, tenant = request.path_params["trace_id"], ui.tenant_for(request)
        action = str(form.get("action") or "feedback")
        add = ui.store.feedback.add
        comment = str(form.get("comment") or "").strip()[:4000] or None
        if action == "review":
            queue = ReviewQueue(ui.store, ui.settings, ui.settings.project_root)
            name = str(form.get("queue") or "")
            item, created = await ui.store.db.call(lambda: queue.add_trace(trace_id, name, tenant=tenant, why=comment))
            saved = f"Sent to review ({item.id} in {item.queue})." if created else f"Already in review ({item.id})."
        elif action == "case":
            saved = await ui.store.db.call(lambda: make_case(ui, request, trace_id, tenant, form))
        else:
            value: Any = {"yes": True, "no": False}.get(str(form.get("value")), form.get("value") or None)
            correction = str(form.get("correction") or "").strip()[:20_000] or None
            await ui.store.db.call(
                lambda: add(trace_id, "helpful", value, tenant=tenant, comment=comment, correction=correction)
            )
            saved = "Feedback saved."
        back = {"saved": saved, **({"tenant": t} if (t := request.query_params.get("tenant")) else {})}
        return RedirectResponse(f"/ui/traces/{trace_id}?{urlencode(back)}", status_code=303)

    return [
        Route("/ui/traces", ui.page(listing), methods=["GET"]),
        Route("/ui/traces/{trace_id}", ui.page(detail), methods=["GET"]),
        Route("/ui/traces/{trace_id}/feedback", ui.page(feedback), methods=["POST"]),
    ]


def _text(raw: str | None) -> str | None:
    return (raw or "").strip()[:200] or None


def _number(raw: str | None, name: str) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number (got {raw[:40]!r})") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest(f"{name} must be zero or more")
    return value


def timeline(rec: dict[str, Any], children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trace as rows of a span tree with a timeline: (depth, name, start and length as shares of
    the whole, status, what it found). A run's steps and model calls sit under it; each call's
    attempts under the call."""
    total = max(float(rec.get("latency_ms") or 0.0), 0.001)
    rows: list[dict[str, Any]] = [_row("root", 0, _span_name(rec), 0.0, total, rec.get("status") or "ok", rec)]
    items: list[tuple[float, dict[str, Any]]] = []
    for s in rec.get("steps") or []:
        status = "error" if s.get("error") else "ok"
        items.append((float(s["at_ms"]), _row("step", 1, s["name"], float(s["at_ms"]), float(s["ms"]), status, s)))
    for c in children:
        at = max(0.0, (float(c["ts"]) - float(rec["ts"])) * 1000)
        items.append((at, _row("call", 1, _span_name(c), at, float(c.get("latency_ms") or 0.0), c["status"], c)))
    items.sort(key=lambda kv: kv[0])
    for _, row in items:
        rows.append(row)
        if row["kind"] == "call":
            rows.extend(_attempts(row["data"], float(rec["ts"]), 2))
    if rec.get("operation") != "feature":
        rows.extend(_attempts(rec, float(rec["ts"]), 1))
    for r in rows:
        total = max(total, r["at"] + r["ms"])
    for r in rows:  # shares of the widest, so a call that outlived its run still fits
        r["left"], r["width"] = r["at"] / total * 100, max(r["ms"] / total * 100, 0.4)
    return rows


def _span_name(rec: dict[str, Any]) -> str:
    if rec.get("operation") == "feature":
        return f"feature {rec.get('feature') or ''}"
    return f"{rec.get('operation')} {rec.get('model') or rec.get('alias') or ''}".strip()


def _row(kind: str, depth: int, name: str, at: float, ms: float, status: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"depth": depth, "name": name, "at": at, "ms": ms, "status": status, "data": data, "kind": kind}


def _attempts(call: dict[str, Any], root_ts: float, depth: int) -> list[dict[str, Any]]:
    out = []
    for a in call.get("attempts") or []:
        started = float(a.get("started") or call["ts"])
        at = max(0.0, (started - root_ts) * 1000)
        ms = max(0.0, (float(a.get("ended") or started) - started) * 1000)
        status = "error" if a.get("error_type") else "ok"
        out.append(_row("attempt", depth, f"attempt {a.get('deployment') or ''}", at, ms, status, a))
    return out
