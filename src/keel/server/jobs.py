"""Durable jobs over HTTP: ``POST /v1/features/{name}/jobs`` queues a feature run (202, with an
``Idempotency-Key`` honoured), ``GET /v1/jobs/{id}`` and ``GET /v1/jobs`` read them within the
caller's tenant, ``GET /v1/jobs/{id}/events`` streams its progress (SSE), ``POST /v1/jobs/{id}/cancel``
stops one. Routes only: the queue is the store's and
the work the worker pool's (``keel.jobs``), which this app runs while it serves."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.config.settings import KeelSettings
from keel.errors import InvalidRequest, JobNotFound
from keel.features.spec import load_feature
from keel.jobs import Pool, job_json
from keel.jobs.webhooks import check_url, delivery_json
from keel.server.auth import caller_of
from keel.server.features import FeatureRoutes
from keel.server.responses import json_response
from keel.server.streaming import ReadingStream
from keel.server.traces import MAX_PAGE
from keel.server.validate import FEATURE_JOB, page_limit
from keel.server.work import Runtime
from keel.store import Store
from keel.store.jobs import Job, encode_cursor

MAX_KEY = 255
POLL_S = 0.25  # how often an events stream looks at its job
KEEPALIVE_S = 15.0
QUERY = ("status", "feature", "cursor", "limit")  # what GET /v1/jobs takes
READERS = ("member", "ingest")  # an ingest key follows the ingest jobs it queued, and no other kind


class JobRoutes:
    def __init__(self, store: Store, features: FeatureRoutes, guard: Any, parse_body: Any, settings: KeelSettings):
        self.store = store
        self.features = features
        self.guard = guard
        self.parse_body = parse_body
        self.keel = settings
        self.settings = settings.jobs
        self.pool: Pool | None = None
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        """The job kinds, batch runner and webhook deliverer, made on first use (the pipeline too)."""
        if self._runtime is None:
            self._runtime = Runtime(self.features.pipeline(), self.keel)
        return self._runtime

    def routes(self) -> list[Route]:
        return [
            Route("/v1/features/{name}/jobs", self.guard(self.submit), methods=["POST"]),
            Route("/v1/jobs", self.guard(self.listing), methods=["GET"]),
            Route("/v1/jobs/{job_id}", self.guard(self.show, READERS), methods=["GET"]),
            Route("/v1/jobs/{job_id}/cancel", self.guard(self.cancel), methods=["POST"]),
            Route("/v1/jobs/{job_id}/events", self.guard(self.events, READERS), methods=["GET"]),
        ]

    def start(self) -> None:
        """The embedded worker pool (``jobs.workers``; 0 leaves the jobs to ``keel worker``)."""
        runtime = self.runtime  # also when no worker runs here: ended jobs still announce their webhooks
        if self.settings.workers and self.pool is None:
            self.pool = runtime.pool()
            self.pool.start()

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()
            self.pool = None

    async def gauges(self) -> dict[str, tuple[str, float]]:
        """What ``/metrics`` shows of the queue (all tenants) and of this app's worker pool."""
        depth, oldest = await self.store.db.call(self.store.jobs.depth)
        pool = self.pool
        hooks = self._runtime.deliverer if self._runtime is not None and pool is not None else None
        return {
            "keel_jobs_queued": ("Jobs waiting to run, in the whole store.", depth),
            "keel_jobs_oldest_queued_seconds": ("How long the oldest waiting job has waited.", oldest or 0.0),
            "keel_jobs_run": ("Jobs this server's workers finished.", pool.ran if pool else 0),
            "keel_jobs_failed_attempts": (
                "Job attempts that failed on this server's workers.",
                pool.failed if pool else 0,
            ),
            "keel_webhooks_delivered": ("Webhook deliveries this server sent (2xx).", hooks.sent if hooks else 0),
            "keel_webhook_failures": (
                "Webhook attempts from this server that failed (each is retried until give-up).",
                hooks.failures if hooks else 0,
            ),
        }

    async def submit(self, request: Request) -> Response:
        caller = caller_of(request)
        name = request.path_params["name"]
        body = await self.parse_body(request)
        FEATURE_JOB.check(body)
        key = request.headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= MAX_KEY:
            raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY} characters", param="Idempotency-Key")
        spec = load_feature(self.features.root, name)  # an unknown feature is a 404 now, not a failed job later
        spec.check_tenant(caller.tenant)
        payload = {
            "inputs": body.get("inputs") or {},
            "user": body.get("user") or request.headers.get("x-keel-user"),
            "label": body.get("label"),
            "key": caller.key,
        }
        mode = body.get("mode") or request.headers.get("x-keel-mode")
        if mode is not None:
            payload["model"] = self.features.service.gateway.settings.model_for_mode(mode)
        webhook = await self.webhook_of(body)
        return await self.enqueue(caller.tenant, "feature", payload, feature=name, key=key, webhook=webhook)

    async def webhook_of(self, body: dict[str, Any]) -> str | None:
        """The body's ``webhook`` URL, checked (http(s), not private unless allowed), or None."""
        webhook = body.get("webhook")
        return None if webhook is None else await asyncio.to_thread(check_url, webhook, self.keel.webhooks)

    async def enqueue(
        self,
        tenant: str,
        kind: str,
        payload: dict[str, Any],
        *,
        feature: str | None = None,
        key: str | None = None,
        webhook: str | None = None,
        priority: int = 0,
    ) -> Response:
        """Queue a job (202), or answer the one this Idempotency-Key made before (200)."""
        digest = hashlib.sha256(
            orjson.dumps([kind, feature, payload, webhook], option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        job, created = await self.store.db.call(
            lambda: self.store.jobs.enqueue(
                tenant,
                kind,
                payload,
                feature=feature,
                priority=priority,
                max_attempts=self.settings.max_attempts,
                idempotency_key=key,
                body_hash=digest,
                webhook=webhook,
            )
        )
        self.nudge(created)
        headers = {"location": f"/v1/jobs/{job.id}", "x-keel-trace-id": str(job.trace_id)}
        return json_response(job_json(job), 202 if created else 200, headers)

    def nudge(self, created: bool = True) -> None:
        if created and self.pool is not None:
            self.pool.nudge()

    async def _job(self, request: Request) -> Job:
        caller, job_id = caller_of(request), request.path_params["job_id"]
        job = await self.store.db.call(lambda: self.store.jobs.get(job_id, tenant=caller.tenant))
        if job is None or (caller.role == "ingest" and job.kind != "ingest"):
            raise JobNotFound(f"no job '{job_id[:80]}'")
        return job

    async def show(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        job = await self._job(request)
        shown = job_json(job)
        if job.webhook is not None:
            found = await self.store.db.call(lambda: self.store.webhooks.find(tenant=tenant, subject=job.id))
            shown["webhook"] = {"url": job.webhook, "deliveries": [delivery_json(d) for d in found]}
        return json_response(shown)

    async def events(self, request: Request) -> Response:
        """Server-sent events: ``progress`` (the job) whenever its status or progress changes, then
        ``done`` (the job, finished) — a comment every 15 s keeps proxies from closing it."""
        tenant, job_id = caller_of(request).tenant, (await self._job(request)).id
        jobs, db = self.store.jobs, self.store.db

        async def body() -> AsyncGenerator[bytes, None]:
            last: tuple[Any, ...] | None = None
            quiet = 0.0
            while True:
                job = await db.call(lambda: jobs.get(job_id, tenant=tenant))
                if job is None:
                    return
                seen = (job.status, job.done, job.total, job.stage, job.attempts, job.cancel_requested)
                if seen != last:
                    last, quiet = seen, 0.0
                    kind = b"done" if job.finished_state else b"progress"
                    yield b"event: " + kind + b"\ndata: " + orjson.dumps(job_json(job)) + b"\n\n"
                    if job.finished_state:
                        return
                elif quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield b": still " + job.status.encode() + b"\n\n"
                await asyncio.sleep(POLL_S)
                quiet += POLL_S

        write_timeout = self.features.service.gateway.settings.server.stream_write_timeout_s
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return ReadingStream(body(), headers=headers, write_timeout_s=write_timeout)

    async def cancel(self, request: Request) -> Response:
        tenant, job_id = caller_of(request).tenant, request.path_params["job_id"]
        return json_response(job_json(await self.store.db.call(lambda: self.store.jobs.cancel(job_id, tenant=tenant))))

    async def listing(self, request: Request) -> Response:
        tenant, query = caller_of(request).tenant, request.query_params
        unknown = sorted(set(query) - set(QUERY))
        if unknown:
            raise InvalidRequest(f"unknown query parameter '{unknown[0]}' (status, feature, cursor, limit)")
        limit = page_limit(query, 50, MAX_PAGE)
        find = self.store.jobs.find
        rows = await self.store.db.call(
            lambda: find(
                tenant=tenant,
                status=query.get("status") or None,
                feature=query.get("feature") or None,
                cursor=query.get("cursor") or None,
                limit=limit + 1,
            )
        )
        page = rows[:limit]
        following = encode_cursor(page[-1]) if len(rows) > limit and page else None
        return json_response({"object": "list", "data": [job_json(j) for j in page], "next_cursor": following})
