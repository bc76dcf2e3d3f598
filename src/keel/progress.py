"""Progress of long work, told to whoever runs it: a job's worker writes it to the job, a CLI draws
a bar. The work calls :func:`report`; the runner sets the receiver with :func:`reporting`. Work run
with no receiver reports to nobody, at the cost of one context-variable read."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

Report = Callable[[int | None, int | None, str | None], None]  # (done, total, stage)
RECEIVER: ContextVar[Report | None] = ContextVar("keel_progress", default=None)


def report(done: int | None, total: int | None, stage: str | None = None) -> None:
    receiver = RECEIVER.get()
    if receiver is not None:
        receiver(done, total, stage)


@contextlib.contextmanager
def reporting(receiver: Report | None) -> Iterator[None]:
    token = RECEIVER.set(receiver)
    try:
        yield
    finally:
        RECEIVER.reset(token)


def receiver() -> Report:
    """The current receiver, to hand to a thread that does not carry the context (a no-op if none)."""
    return RECEIVER.get() or (lambda done, total, stage: None)
