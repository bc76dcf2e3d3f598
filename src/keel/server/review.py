"""The review queue over HTTP, within the caller's tenant. ``reviewer`` keys (and members, admins)
list, claim and decide items; they never need trace access, since an item carries its own view.

    GET  /v1/review/items?queue=&status=&cursor=&limit=    oldest first
    POST /v1/review/items                                 {"trace_id", "queue"}: send a run by hand (members)
    GET  /v1/review/items/{id}
    POST /v1/review/items/{id}/claim                      a lock with a time limit (review.claim_minutes)
    POST /v1/review/items/{id}/release
    POST /v1/review/items/{id}/decision                   {"action": approve | edit | reject, output, reason, labels}
    POST /v1/review/queues/{queue}/claim                  the queue's oldest unclaimed item, claimed (404: none)
    GET  /v1/review/stats?queue=                          backlog, SLA, rates, confidence agreement

It also serves a feature run the pipeline routed to review: ``after`` queues it and answers as
usual; ``hold`` answers ``202`` with the job that now awaits a person (a stream ends with a
``held`` event instead of the answer)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import InvalidRequest, ReviewItemNotFound
from keel.features.result import FeatureResult
from keel.features.spec import load_feature
from keel.jobs import job_json
from keel.review import ReviewQueue, item_json
from keel.review.stats import queue_stats
from keel.server.auth import caller_of
from keel.server.jobs import JobRoutes
from keel.server.responses import json_response
from keel.server.schema import AnyValue, Boolean, Number, Obj, OneOf, Text
from keel.server.traces import MAX_PAGE
from keel.server.validate import page_limit
from keel.store.keys import Caller
from keel.store.reviews import ACTIONS, encode_cursor

REVIEWERS = ("member", "reviewer")
QUERY = ("queue", "status", "cursor", "limit")
DECISION = Obj(
    {
        "action": Text(choices=ACTIONS),
        "output": AnyValue(description="edit: the corrected answer (an object for features with a schema)"),
        "reason": Text(max_length=4000),
        "labels": Obj(values=OneOf((Text(max_length=200), Number(), Boolean()), says="a string, number or boolean")),
    },
    required=("action",),
    extra=False,
    name="ReviewDecision",
)
ADD = Obj(
    {
        "trace_id": Text(nonempty=True, max_length=200, description="a feature run's trace id"),
        "queue": Text(nonempty=True, max_length=64),
    },
    required=("trace_id", "queue"),
    extra=False,
    name="ReviewItemCreate",
)


def reviewer_of(request: Request) -> str:
    """Who decides: the person the ``x-keel-user`` header names, else the key (``local`` without auth)."""
    named = request.headers.get("x-keel-user")
    if named is not None and not 0 < len(named) <= 200:
        raise InvalidRequest("x-keel-user is 1 to 200 characters", param="x-keel-user")
    return named or caller_of(request).key or "local"


class ReviewRoutes:
    def __init__(self, jobs: JobRoutes, guard: Any, parse_body: Any) -> None:
        self.jobs = jobs
        self.guard = guard
        self.parse_body = parse_body
        self.store = jobs.store
        self.settings = jobs.keel.review

    @property
    def queue(self) -> ReviewQueue:
        return self.jobs.runtime.review

    def routes(self) -> list[Route]:
        g = self.guard
        return [
            Route("/v1/review/items", g(self.listing, REVIEWERS), methods=["GET"]),
            Route("/v1/review/items", g(self.add), methods=["POST"]),
            Route("/v1/review/items/{item_id}", g(self.show, REVIEWERS), methods=["GET"]),
            Route("/v1/review/items/{item_id}/claim", g(self.claim, REVIEWERS), methods=["POST"]),
            Route("/v1/review/items/{item_id}/release", g(self.release, REVIEWERS), methods=["POST"]),
            Route("/v1/review/items/{item_id}/decision", g(self.decision, REVIEWERS), methods=["POST"]),
            Route("/v1/review/queues/{queue}/claim", g(self.claim_next, REVIEWERS), methods=["POST"]),
            Route("/v1/review/stats", g(self.stats, REVIEWERS), methods=["GET"]),
        ]

    def _shown(self, caller: Caller, item: Any) -> dict[str, Any]:
        return item_json(item, raw=caller.role in self.settings.raw_roles)

    # -- serving a routed run --------------------------------------------------------------------------
    async def routed(
        self, result: FeatureResult, inputs: dict[str, Any], caller: Caller, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Queue a run the pipeline routed; for ``hold``, the job (JSON) the caller gets instead."""
        if result.review is None:
            return None
        spec = load_feature(self.jobs.features.root, result.feature)
        queue = self.queue
        item = await asyncio.to_thread(lambda: queue.route(spec, result, inputs, tenant=caller.tenant, payload=payload))
        if item is None or item.mode != "hold" or item.job_id is None:
            return None
        job = await self.store.db.call(lambda: self.store.jobs.get(str(item.job_id), tenant=caller.tenant))
        assert job is not None
        message = spec.review.message if spec.review is not None else ""
        return {**job_json(job), "message": message}

    # -- reviewers -------------------------------------------------------------------------------------
    async def listing(self, request: Request) -> Response:
        caller, query = caller_of(request), request.query_params
        unknown = sorted(set(query) - set(QUERY))
        if unknown:
            raise InvalidRequest(f"unknown query parameter '{unknown[0]}' (queue, status, cursor, limit)")
        limit = page_limit(query, 50, MAX_PAGE)
        queue = query.get("queue") or None
        if queue is not None:
            await asyncio.to_thread(self.queue.check_queue, queue)
        find = self.store.reviews.find
        rows = await self.store.db.call(
            lambda: find(
                tenant=caller.tenant,
                queue=queue,
                status=query.get("status") or None,
                cursor=query.get("cursor") or None,
                limit=limit + 1,
            )
        )
        page = rows[:limit]
        following = encode_cursor(page[-1]) if len(rows) > limit and page else None
        return json_response(
            {"object": "list", "data": [self._shown(caller, i) for i in page], "next_cursor": following}
        )

    async def add(self, request: Request) -> Response:
        caller = caller_of(request)
        body = await self.parse_body(request)
        ADD.check(body)
        queue = self.queue
        item, created = await asyncio.to_thread(
            lambda: queue.add_trace(body["trace_id"], body["queue"], tenant=caller.tenant)
        )
        return json_response(self._shown(caller, item), 201 if created else 200)

    async def _item(self, request: Request) -> Any:
        caller, item_id = caller_of(request), request.path_params["item_id"]
        item = await self.store.db.call(lambda: self.store.reviews.get(item_id, tenant=caller.tenant))
        if item is None:
            raise ReviewItemNotFound(f"no review item '{item_id[:80]}'")
        return item

    async def show(self, request: Request) -> Response:
        return json_response(self._shown(caller_of(request), await self._item(request)))

    async def claim(self, request: Request) -> Response:
        caller, item_id, who = caller_of(request), request.path_params["item_id"], reviewer_of(request)
        queue = self.queue
        item = await asyncio.to_thread(lambda: queue.claim(item_id, tenant=caller.tenant, who=who))
        return json_response(self._shown(caller, item))

    async def release(self, request: Request) -> Response:
        caller, item_id, who = caller_of(request), request.path_params["item_id"], reviewer_of(request)
        reviews = self.store.reviews
        item = await self.store.db.call(lambda: reviews.release(item_id, tenant=caller.tenant, who=who))
        return json_response(self._shown(caller, item))

    async def claim_next(self, request: Request) -> Response:
        caller, name, who = caller_of(request), request.path_params["queue"], reviewer_of(request)
        queue = self.queue
        await asyncio.to_thread(queue.check_queue, name)
        ttl = self.settings.claim_minutes * 60
        reviews = self.store.reviews
        item = await self.store.db.call(
            lambda: reviews.claim_next(tenant=caller.tenant, queue=name, who=who, ttl_s=ttl)
        )
        if item is None:
            raise ReviewItemNotFound(f"queue '{name}' has no unclaimed item")
        return json_response(self._shown(caller, item))

    async def decision(self, request: Request) -> Response:
        caller, item_id, who = caller_of(request), request.path_params["item_id"], reviewer_of(request)
        body = await self.parse_body(request)
        DECISION.check(body)
        queue = self.queue
        item = await asyncio.to_thread(lambda: queue.decide(item_id, body, tenant=caller.tenant, who=who))
        return json_response(self._shown(caller, item))

    async def stats(self, request: Request) -> Response:
        caller, query = caller_of(request), request.query_params
        unknown = sorted(set(query) - {"queue"})
        if unknown:
            raise InvalidRequest(f"unknown query parameter '{unknown[0]}' (queue)")
        name = query.get("queue") or None
        if name is not None:
            await asyncio.to_thread(self.queue.check_queue, name)
        reviews = self.store.reviews
        queues = await self.store.db.call(lambda: reviews.queues(tenant=caller.tenant))
        decisions = await self.store.db.call(lambda: reviews.decisions(tenant=caller.tenant, queue=name))
        shown = [q for q in queue_stats(queues, decisions) if name is None or q["queue"] == name]
        return json_response({"object": "list", "data": shown})

    async def monitor_alerts(self) -> list[tuple[dict[str, str], float]]:
        """The open monitor alerts of every tenant, for ``keel_monitor_alert{tenant,feature,signal}``."""
        rows = await self.store.db.call(self.store.monitors.all_open)
        return [({"tenant": a.tenant, "feature": a.feature, "signal": a.signal}, 1.0) for a in rows]

    async def gauges(self) -> dict[str, tuple[str, float]]:
        """What ``/metrics`` shows of review (all tenants; decisions and breaches seen by this server)."""
        n, oldest, breached = await self.store.db.call(self.store.reviews.open_counts)
        queue = self.jobs._runtime.review if self.jobs._runtime is not None else None
        return {
            "keel_review_open": ("Review items waiting for a person, in the whole store.", n),
            "keel_review_oldest_open_seconds": ("How long the oldest open review item has waited.", oldest or 0.0),
            "keel_review_open_breached": ("Open review items past their SLA.", breached),
            "keel_review_decisions": ("Review decisions made through this server.", queue.decided if queue else 0),
            "keel_review_sla_breaches": (
                "Review items this server's sweeper found past their SLA.",
                queue.breaches if queue else 0,
            ),
        }
