"""The work a Keel process runs off the request path, assembled once for ``keel serve`` and
``keel worker`` alike: the job kinds (feature runs, ingests, eval runs, batches, monitor scoring),
the batch runner the Batch API routes share, the webhook deliverer, the review queue (its SLA
sweeper, and the hand-off that holds a feature job for review) and the monitors' sweeper — with
ended jobs and new review items announcing themselves to the webhook outbox inside the
transactions that make them."""

from __future__ import annotations

import asyncio

from keel.config.settings import KeelSettings
from keel.evals.jobs import KIND as EVAL
from keel.evals.jobs import eval_work
from keel.features.pipeline import FeaturePipeline
from keel.features.result import FeatureResult
from keel.features.spec import load_feature
from keel.gateway.admission import Admission
from keel.jobs.batches import KIND as BATCH
from keel.jobs.batches import BatchRunner
from keel.jobs.kinds import builtin_work
from keel.jobs.webhooks import Deliverer, announcer
from keel.jobs.worker import Pool, Work
from keel.monitor.scoring import KIND as MONITOR
from keel.monitor.scoring import monitor_work
from keel.monitor.sweeper import Monitors
from keel.review import ReviewQueue
from keel.server.lines import line_caller
from keel.store.jobs import Job


class Runtime:
    def __init__(self, pipeline: FeaturePipeline, settings: KeelSettings) -> None:
        store, service = pipeline.store, pipeline.service
        self.pipeline = pipeline
        self.settings = settings
        admission = service.admission or Admission(service.gateway, service.prices, settings, None, None)
        self.batches = BatchRunner(store, admission, line_caller(service), settings.batches)
        self.deliverer = Deliverer(store, settings.webhooks)
        store.jobs.on_end = announcer(store, settings.webhooks)
        self.review = ReviewQueue(store, settings, pipeline.root)
        store.reviews.on_event = self.review.announcer()
        self.monitors = Monitors(store, settings, pipeline.root)

    def work(self) -> dict[str, Work]:
        feature_kinds = builtin_work(self.pipeline, self.handoff)
        scoring = monitor_work(self.pipeline, self.monitor_failed)
        extra = {EVAL: eval_work(self.pipeline), BATCH: self.batches.work, MONITOR: scoring}
        return {**feature_kinds, **extra}

    async def handoff(self, job: Job, result: FeatureResult) -> bool:
        """A feature job's routed run goes to its queue; True when the job now awaits a person."""
        spec = load_feature(self.pipeline.root, str(job.feature))
        inputs = (job.payload or {}).get("inputs") or {}
        hold = job if result.review is not None and result.review["mode"] == "hold" else None
        item = await asyncio.to_thread(self.review.route, spec, result, inputs, tenant=job.tenant, job=hold)
        if item is None or hold is None:
            return False
        # held now — unless the trace had its item already (a job retried by hand after its review
        # ended): never queued twice, so this attempt's answer is served
        now = await asyncio.to_thread(self.pipeline.store.jobs.get, job.id, tenant=job.tenant)
        return now is not None and now.status == "awaiting_review"

    async def monitor_failed(self, tenant: str, trace_id: str, queue: str, why: str) -> None:
        """A run a monitor's check failed goes to its feature's queue (``review: {when: monitor failed}``)."""
        await asyncio.to_thread(self.review.add_trace, trace_id, queue, tenant=tenant, reason=why)

    def pool(self, workers: int | None = None) -> Pool:
        jobs = self.settings.jobs
        chosen = jobs if workers is None else jobs.model_copy(update={"workers": workers})
        loops = [self.deliverer.run, self.review.sweeper, self.monitors.sweeper]
        return Pool(self.pipeline.store, self.work(), chosen, extra=loops)
