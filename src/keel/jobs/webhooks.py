"""Webhooks for jobs and batches, signed as Standard Webhooks and sent from the store's outbox.

When a job ends, its event (``job.succeeded``, ``job.failed``, ``job.cancelled``, ``job.expired``;
``batch.completed``… for a batch) is written to the outbox in the same transaction that ends it,
so a worker killed a moment later loses nothing. Every pool runs a deliverer: it POSTs each due
delivery with the ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers (HMAC-SHA256
with the endpoint's own secret, ``keel webhooks secret URL`` prints it), and on anything but a 2xx
tries again after 5 s, doubling with ±20% jitter up to an hour apart, until 24 h have passed.

A URL must be http(s). One on loopback, a private network or link-local (the cloud metadata
address) is refused unless ``webhooks.allow_private`` — when it is submitted, and again when it is
sent, since a name can resolve elsewhere by then.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from standardwebhooks import Webhook

from keel.config.jobs import WebhookSettings
from keel.errors import InvalidRequest
from keel.jobs.shape import job_json
from keel.store import Store
from keel.store.jobs import Job
from keel.store.webhooks import Delivery

log = logging.getLogger("keel.webhooks")
POLL_S = 1.0
MAX_URL = 2048


def check_url(url: Any, settings: WebhookSettings, *, param: str = "webhook") -> str:
    """A webhook URL fit to be called, or a 400 saying why not (the name is resolved now too)."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        raise InvalidRequest(f"{param} is a URL of at most {MAX_URL} characters", param=param)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{param} must be an http:// or https:// URL with a host, not {url[:100]!r}", param=param)
    if parts.username or parts.password:
        raise InvalidRequest(f"{param} must not carry credentials; the signature authenticates Keel", param=param)
    if not settings.allow_private:
        problem = private_address(parts.hostname)
        if problem:
            raise InvalidRequest(
                f"{param} {parts.hostname} {problem}; webhooks go to public addresses unless "
                "webhooks.allow_private is set in keel.yaml",
                param=param,
            )
    return url


def private_address(host: str) -> str | None:
    """Why ``host`` is not a public address (None when it is, or cannot be resolved now)."""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
            return "is loopback"
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return None  # unresolvable now: the delivery will say so
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    for a in addresses:
        if a.is_loopback:
            return f"is loopback ({a})"
        if a.is_link_local:
            return f"is link-local ({a})"
        if a.is_private or a.is_reserved or a.is_multicast or a.is_unspecified:
            return f"is a private address ({a})"
    return None


def event_name(job: Job) -> str:
    """``job.succeeded``…; a batch's job tells how its batch ended: ``batch.completed``…"""
    if job.kind == "batch" and isinstance(job.result, dict) and job.result.get("status"):
        return f"batch.{job.result['status']}"
    return f"job.{job.status}"


def announcer(store: Store, settings: WebhookSettings) -> Callable[[Job], None]:
    """What ``store.jobs.on_end`` calls: queue the ended job's event for its webhook, inside the
    transaction that ended it."""

    def announce(job: Job) -> None:
        if job.webhook is None:
            return
        event = event_name(job)
        payload = {"type": event, "timestamp": dt.datetime.now(dt.UTC).isoformat(), "data": job_json(job)}
        store.webhooks.enqueue(job.tenant, job.id, job.webhook, event, payload, give_up_s=settings.give_up_h * 3600)

    return announce


def next_try(attempts: int, settings: WebhookSettings) -> float:
    """When to try again after ``attempts`` failed tries: 5 s, doubling, ±20% jitter, ≤ 1 h."""
    wait = min(settings.max_retry_s, settings.first_retry_s * 2 ** max(0, attempts - 1))
    return time.time() + float(wait) * random.uniform(0.8, 1.2)


class Deliverer:
    """Sends due deliveries; one per pool, any number across replicas."""

    def __init__(self, store: Store, settings: WebhookSettings, *, client: httpx.AsyncClient | None = None):
        self.store = store
        self.settings = settings
        self.client = client
        self.sent = 0
        self.failures = 0

    async def run(self) -> None:
        client = self.client or httpx.AsyncClient(timeout=self.settings.timeout_s, follow_redirects=False)
        try:
            while True:
                try:
                    due = await asyncio.to_thread(self.store.webhooks.claim)
                except Exception as exc:
                    log.warning("could not read the webhook outbox: %s", exc)
                    due = []
                if due:
                    await asyncio.gather(*(self.send(client, d) for d in due))
                else:
                    await asyncio.sleep(POLL_S)
        finally:
            if self.client is None:
                await client.aclose()

    async def send(self, client: httpx.AsyncClient, d: Delivery) -> str:
        status: int | None = None
        error: str | None = None
        try:
            host = urlsplit(d.url).hostname or ""
            problem = None if self.settings.allow_private else await asyncio.to_thread(private_address, host)
            if problem:
                raise PermissionError(f"{host} {problem} now; not sent (webhooks.allow_private is off)")
            secret = await asyncio.to_thread(self.store.webhooks.secret, d.tenant, d.url)
            body = _dumps(d.payload)
            now = dt.datetime.now(dt.UTC)
            signature = Webhook(secret).sign(d.id, now, body)
            headers = {
                "content-type": "application/json",
                "webhook-id": d.id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature,
                "user-agent": "keel-webhooks",
            }
            reply = await client.post(d.url, content=body.encode(), headers=headers)
            status = reply.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}: {reply.text[:200]}"
        except PermissionError as exc:
            error = str(exc)
        except Exception as exc:  # refused, reset, timed out: all retried
            error = f"{type(exc).__name__}: {exc}"[:300]
        ok = status is not None and 200 <= status < 300
        retry = None if ok else next_try(d.attempts + 1, self.settings)
        state = await asyncio.to_thread(
            lambda: self.store.webhooks.attempted(d, status=status, error=error, retry_at=retry)
        )
        if ok:
            self.sent += 1
        else:
            self.failures += 1
            if state == "failed":
                log.warning("webhook %s to %s given up after %d attempts: %s", d.id, d.url, d.attempts + 1, error)
        return state


def _dumps(payload: Any) -> str:
    return orjson.dumps(payload).decode()


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event": d.event,
        "url": d.url,
        "status": d.status,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "next_at": d.next_at if d.status == "pending" else None,
        "created": d.created,
        "delivered": d.delivered,
        "log": d.log,
    }
