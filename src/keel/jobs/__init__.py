"""Durable jobs: the worker pool that runs what ``keel.store.jobs`` queues, and the built-in kinds
of work (feature runs, ingests; batches in ``keel.jobs.batches``)."""

from keel.jobs.shape import job_json
from keel.jobs.worker import Pool

__all__ = ["Pool", "job_json"]
