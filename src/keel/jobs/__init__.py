"""Durable jobs: the worker pool that runs what ``keel.store.jobs`` queues (feature runs today)."""

from keel.jobs.worker import Pool

__all__ = ["Pool"]
