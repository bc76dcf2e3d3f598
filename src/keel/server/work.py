"""The work a Keel process runs off the request path, assembled once for ``keel serve`` and
``keel worker`` alike: the job kinds (feature runs, ingests, eval runs, batches), the batch runner
the Batch API routes share, and the webhook deliverer — with ended jobs announcing themselves to
the webhook outbox inside the transaction that ends them."""

from __future__ import annotations

from keel.config.settings import KeelSettings
from keel.evals.jobs import KIND as EVAL
from keel.evals.jobs import eval_work
from keel.features.pipeline import FeaturePipeline
from keel.gateway.admission import Admission
from keel.jobs.batches import KIND as BATCH
from keel.jobs.batches import BatchRunner
from keel.jobs.kinds import builtin_work
from keel.jobs.webhooks import Deliverer, announcer
from keel.jobs.worker import Pool, Work
from keel.server.lines import line_caller


class Runtime:
    def __init__(self, pipeline: FeaturePipeline, settings: KeelSettings) -> None:
        store, service = pipeline.store, pipeline.service
        self.pipeline = pipeline
        self.settings = settings
        admission = service.admission or Admission(service.gateway, service.prices, settings, None, None)
        self.batches = BatchRunner(store, admission, line_caller(service), settings.batches)
        self.deliverer = Deliverer(store, settings.webhooks)
        store.jobs.on_end = announcer(store, settings.webhooks)

    def work(self) -> dict[str, Work]:
        return {**builtin_work(self.pipeline), EVAL: eval_work(self.pipeline), BATCH: self.batches.work}

    def pool(self, workers: int | None = None) -> Pool:
        jobs = self.settings.jobs
        chosen = jobs if workers is None else jobs.model_copy(update={"workers": workers})
        return Pool(self.pipeline.store, self.work(), chosen, extra=[self.deliverer.run])
