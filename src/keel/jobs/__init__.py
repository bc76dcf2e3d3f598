"""Durable jobs: the worker pool that runs what ``keel.store.jobs`` queues (feature runs today)."""

from keel.jobs.shape import job_json
from keel.jobs.worker import Pool

__all__ = ["Pool", "job_json"]
