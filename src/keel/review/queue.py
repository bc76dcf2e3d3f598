"""The review queue: answers routed to a person, their decisions, and what each decision does.

    features/support_answer.yaml
      review: {when: "confidence < 0.6", mode: hold, queue: support, sample: 0.02, sla_minutes: 30}

The pipeline decides the route (keel.features.reviewing); a caller that serves the run — the HTTP
route, a feature job, ``keel run`` — hands the result here. ``after`` queues it and serves it;
``hold`` queues it and keeps it from the user: a job ``awaiting_review`` (202 over HTTP), ended by
the decision — approve serves the answer, edit the reviewer's answer (checked against the feature's
schema), reject the fallback — or, once the SLA passes, as ``on_timeout`` says. Every decision is
feedback on the trace (``review``) and, approved or edited, a correction that
``keel evals promote --from-reviews`` turns into an eval case. Queue webhooks hear of new items and
SLA breaches through the signed outbox.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from keel.checks.schema import validator
from keel.config.settings import KeelSettings
from keel.errors import FeatureNotFound, InvalidRequest, KeelError, ReviewItemNotFound, TraceNotFound
from keel.features.result import FeatureResult
from keel.features.reviewing import fallback_of
from keel.features.spec import FeatureSpec, load_feature
from keel.review.backfill import record_item
from keel.review.items import make_view
from keel.store import Store
from keel.store.jobs import Job
from keel.store.reviews import ACTIONS, Decision, NewItem, ReviewItem
from keel.text import cited

log = logging.getLogger("keel.review")
MAX_LABELS = 50
MAX_OUTPUT = 100_000
NAME_LIMIT = 200


class ReviewQueue:
    def __init__(self, store: Store, settings: KeelSettings, root: Path) -> None:
        self.store = store
        self.settings = settings
        self.root = root
        self.decided = 0  # decisions through this process (/metrics)
        self.breaches = 0

    # -- routing ---------------------------------------------------------------------------------------
    def route(
        self,
        spec: FeatureSpec,
        result: FeatureResult,
        inputs: dict[str, Any],
        *,
        tenant: str | None,
        job: Job | None = None,
        payload: dict[str, Any] | None = None,
    ) -> ReviewItem | None:
        """Queue a routed result (None when the pipeline did not route it). ``mode: hold``: ``job`` is
        the running job a worker holds for it; without one a job is made (``payload``: its request)."""
        route, review = result.review, spec.review
        if route is None or review is None:
            return None
        held = None
        if route["mode"] == "hold":
            served = result.as_dict()
            held = {
                "serve": served,
                "fallback": _fallback_result(served, fallback_of(spec)),
                "on_timeout": review.on_timeout,
                "message": review.message,
            }
        new = NewItem(
            tenant=tenant or "default",
            queue=route["queue"],
            trace_id=result.trace_id,
            mode=route["mode"],
            view=make_view(result, inputs, self.settings.tracing.capture, spec.prompt),
            due=time.time() + review.sla_minutes * 60,
            feature=spec.name,
            reason=route["reason"],
            sampled=bool(route["sampled"]),
            confidence=result.confidence,
            prompt_version=result.prompt_version,
            model=result.model,
            cost_usd=result.cost_usd,
            held=held,
            job_payload=payload or {},
        )
        item, _ = self.store.reviews.add(new, hold=job)
        return item

    def add_trace(
        self, trace_id: str, queue: str, *, tenant: str | None, why: str | None = None, reason: str | None = None
    ) -> tuple[ReviewItem, bool]:
        """Send a feature run to a queue by hand (``keel review add TRACE``): reviewed after the fact."""
        self.check_queue(queue)
        record = self.store.traces.get(trace_id, tenant=tenant)
        if record is None or record.operation != "feature":
            raise TraceNotFound(f"no feature run with trace id '{trace_id[:80]}'")
        spec = self._spec(record.feature)
        sla = spec.review.sla_minutes if spec is not None and spec.review is not None else 24 * 60
        reason = reason or (f"sent by hand: {why[:500]}" if why else "sent by hand")
        new = record_item(record, queue, reason, sla, self.settings.tracing.capture)
        return self.store.reviews.add(new)

    # -- queues ----------------------------------------------------------------------------------------
    def queues(self) -> set[str]:
        """The queues this project names: in keel.yaml ``review.queues`` and in the feature specs."""
        names = set(self.settings.review.queues)
        folder = self.root / "features"
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            spec = self._spec(path.stem)
            if spec is not None and spec.review is not None:
                names.add(spec.review.queue)
        return names

    def check_queue(self, queue: Any) -> str:
        if not isinstance(queue, str) or not queue:
            raise InvalidRequest("'queue' is a queue name", param="queue")
        known = self.queues()
        if queue not in known:
            listed = ", ".join(sorted(known)) or "none: declare review: in a feature spec"
            raise ReviewItemNotFound(f"no review queue '{queue[:80]}' (queues: {listed})")
        return queue

    def _spec(self, feature: str | None) -> FeatureSpec | None:
        if not feature:
            return None
        try:
            return load_feature(self.root, feature)
        except (FeatureNotFound, KeelError):  # a spec that no longer loads: no review settings from it
            return None

    # -- decisions -------------------------------------------------------------------------------------
    def claim(self, item_id: str, *, tenant: str | None, who: str) -> ReviewItem:
        ttl = self.settings.review.claim_minutes * 60
        return self.store.reviews.claim(item_id, tenant=tenant, who=who, ttl_s=ttl)

    def decide(self, item_id: str, body: Any, *, tenant: str | None, who: str) -> ReviewItem:
        """Check a decision body and record it; for a held item the job ends with it."""
        if not isinstance(body, dict):
            raise InvalidRequest('the body is a JSON object: {"action": "approve" | "edit" | "reject", …}')
        unknown = sorted(set(body) - {"action", "output", "reason", "labels"})
        if unknown:
            raise InvalidRequest(f"unknown field '{unknown[0]}' (action, output, reason, labels)", param=unknown[0])
        action = body.get("action")
        if action not in ACTIONS:
            raise InvalidRequest(f"'action' is one of {', '.join(ACTIONS)}", param="action")
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 4000):
            raise InvalidRequest("'reason' is a string of at most 4000 characters", param="reason")
        labels = _labels(body.get("labels"))
        item = self.store.reviews.get(item_id, tenant=tenant)
        if item is None:
            raise ReviewItemNotFound(f"no review item '{item_id[:80]}'")
        spec = self._spec(item.feature)
        output, correction, job_result = None, None, None
        served = (item.held or {}).get("serve") or {}
        if action == "edit":
            if "output" not in body or body["output"] in (None, ""):
                raise InvalidRequest("an edit carries the corrected answer in 'output'", param="output")
            output, answer, value = self._edited(spec, body["output"])
            correction = answer
            if item.held is not None:
                job_result = _edited_result(served, answer, value, who)
        elif body.get("output") is not None:
            raise InvalidRequest(f"'output' goes with action edit, not {action}", param="output")
        elif action == "approve":
            correction = str(served.get("answer") or item.view.get("answer") or "") or None
            if item.held is not None:
                job_result = {**served, "notes": [*served.get("notes", []), f"review: approved by {who}"]}
        elif item.held is not None:
            fallback = item.held.get("fallback") or {}
            job_result = {**fallback, "notes": [*fallback.get("notes", []), f"review: rejected by {who}"]}
        decision = Decision(action, output, reason, labels, correction, job_result)
        decided = self.store.reviews.decide(item_id, tenant=tenant, who=who, decision=decision)
        self.decided += 1
        return decided

    def _edited(self, spec: FeatureSpec | None, output: Any) -> tuple[Any, str, Any]:
        """(stored output, answer text, structured value) of an edit, checked against the feature's
        schema when it has one (400 naming the field)."""
        schema = None
        if spec is not None and spec.output is not None and (spec.output.schema_path or spec.output.pydantic):
            schema = spec.output.load_schema(self.root)
        if schema is None:
            if not isinstance(output, str) or len(output) > MAX_OUTPUT:
                raise InvalidRequest(f"'output' is the corrected answer, a string of at most {MAX_OUTPUT} characters")
            return output, output, None
        value = output
        if isinstance(output, str):
            try:
                value = orjson.loads(output)
            except orjson.JSONDecodeError:
                raise InvalidRequest("'output' must be JSON for this feature (it has an output schema)") from None
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            try:
                value = schema.model_validate(value).model_dump(mode="json")
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "(root)"
                raise InvalidRequest(
                    f"'output' breaks the feature's schema at {where}: {err['msg']}", param="output"
                ) from None
        else:
            errors = sorted(validator(schema).iter_errors(value), key=lambda e: list(e.path))
            if errors:
                where = "/".join(str(p) for p in errors[0].path) or "(root)"
                raise InvalidRequest(
                    f"'output' breaks the feature's schema at {where}: {errors[0].message}", param="output"
                )
        return value, orjson.dumps(value).decode(), value

    # -- housekeeping ----------------------------------------------------------------------------------
    async def sweeper(self) -> None:
        """Check SLAs every ``review.sweep_s`` (a loop the worker pools run)."""
        while True:
            await asyncio.sleep(self.settings.review.sweep_s)
            try:
                swept = await asyncio.to_thread(self.store.reviews.sweep)
                self.breaches += swept["expired"] + swept["breached"]
            except Exception as exc:
                log.warning("the review sweeper could not run: %s", exc)

    def announcer(self) -> Any:
        """What ``store.reviews.on_event`` calls: queue a queue's webhook, in the item's transaction."""
        hooks, give_up = self.settings.review.queues, self.settings.webhooks.give_up_h * 3600

        def announce(event: str, item: ReviewItem) -> None:
            queue = hooks.get(item.queue)
            if queue is None or queue.webhook is None:
                return
            name = "review.item.created" if event == "created" else "review.sla_breached"
            data = {"id": item.id, "queue": item.queue, "feature": item.feature, "trace_id": item.trace_id,
                    "mode": item.mode, "reason": item.reason, "confidence": item.confidence, "due": item.due,
                    "job_id": item.job_id}  # fmt: skip
            payload = {"type": name, "timestamp": dt.datetime.now(dt.UTC).isoformat(), "data": data}
            self.store.webhooks.enqueue(item.tenant, item.id, queue.webhook, name, payload, give_up_s=give_up)

        return announce


def _fallback_result(served: dict[str, Any], fallback: Any) -> dict[str, Any]:
    text = fallback if isinstance(fallback, str) else orjson.dumps(fallback).decode()
    return {
        **served,
        "answer": text,
        "value": None if isinstance(fallback, str) else fallback,
        "citations": [],
        "notes": [*served.get("notes", []), "review: served the fallback"],
    }


def _edited_result(served: dict[str, Any], answer: str, value: Any, who: str) -> dict[str, Any]:
    given = len(served.get("sources") or [])
    return {
        **served,
        "answer": answer,
        "value": value,
        "citations": [{"number": n, "valid": 1 <= n <= given} for n in cited(answer)],
        "notes": [*served.get("notes", []), f"review: edited by {who}"],
    }


def _labels(labels: Any) -> dict[str, Any] | None:
    if labels is None:
        return None
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        raise InvalidRequest(f"'labels' is an object of at most {MAX_LABELS} names", param="labels")
    for name, value in labels.items():
        if not 0 < len(name) <= NAME_LIMIT:
            raise InvalidRequest(f"a label name is 1–{NAME_LIMIT} characters", param="labels")
        if not isinstance(value, str | int | float | bool) or (isinstance(value, str) and len(value) > NAME_LIMIT):
            raise InvalidRequest(f"label '{name[:40]}' is a string, number or boolean", param="labels")
    return labels
