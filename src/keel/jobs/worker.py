"""Workers: claim jobs from the store, run them, renew their leases, and finish them.

``keel serve`` runs a pool of them in its own event loop (``jobs.workers``, 2 by default); any
other host can run more against the shared store. Each worker claims one job at a time, renews its
lease every third of it while the job runs, and stops the work when the job is cancelled or the
lease is lost. The reaper runs in every pool. What a job of each kind does is the pool's ``work``
table (``keel.jobs.kinds``, and the edge's additions); the work tells its progress through
``keel.progress.report``, which the pool writes to the job at most every quarter second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from keel.config.jobs import JobsSettings
from keel.errors import KeelError
from keel.progress import reporting
from keel.store import Store
from keel.store.jobs import Job

log = logging.getLogger("keel.jobs")
Work = Callable[[Job], Awaitable[tuple[Any, float | None]]]  # → (result, cost)


class Held:
    """What a work returns when it handed its job on (``awaiting_review``): the pool leaves it be."""


HELD = Held()
RETRY_S = 2.0  # the first retry's wait; doubled each attempt
FLUSH_S = 0.25  # how often a running job's newest progress is written
REAP_S = 1.0  # how often the reaper looks for leases run out (a read, unless one has)


class Progress:
    """The newest progress a job's work reported; the pool writes it when it changed."""

    def __init__(self) -> None:
        self.value: tuple[int | None, int | None, str | None] | None = None
        self.written: tuple[int | None, int | None, str | None] | None = None

    def __call__(self, done: int | None, total: int | None, stage: str | None) -> None:
        self.value = (done, total, stage)  # one assignment: safe from the work's threads too


class Pool:
    def __init__(
        self,
        store: Store,
        work: Mapping[str, Work],
        settings: JobsSettings,
        *,
        poll_s: float = 0.05,
        extra: list[Callable[[], Coroutine[Any, Any, None]]] | None = None,
    ):
        self.store = store
        self.work = dict(work)
        self.extra = extra or []  # loops that run beside the workers (the webhook outbox)
        self.settings = settings
        self.poll_s = poll_s
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.ran = 0
        self.failed = 0

    def start(self) -> None:
        for i in range(self.settings.workers):
            self._tasks.append(asyncio.get_running_loop().create_task(self._worker(f"{self.name}/{i}")))
        if self._tasks:
            self._tasks.append(asyncio.get_running_loop().create_task(self._reaper()))
            self._tasks.extend(asyncio.get_running_loop().create_task(loop()) for loop in self.extra)

    def nudge(self) -> None:
        """A job was just queued here: look now rather than at the next poll."""
        self._wake.set()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _call(self, fn: Callable[[], Any]) -> Any:
        """A store call off the event loop, on either engine: a claim on SQLite may wait for the write
        lock the trace writer holds, and the gateway's requests must not wait with it."""
        return await asyncio.to_thread(fn)

    # -- the loops -----------------------------------------------------------------------------------
    async def _worker(self, name: str) -> None:
        kinds = list(self.work)
        while True:
            try:
                job = await self._call(lambda: self.store.jobs.claim(name, self.settings.lease_s, kinds=kinds))
            except Exception as exc:  # the store is away: wait and try again, never die
                log.warning("could not claim a job: %s", exc)
                job = None
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                continue
            await self._run(job)

    async def _reaper(self) -> None:
        while True:
            await asyncio.sleep(REAP_S)
            try:
                await self._call(self.store.jobs.reap)
            except Exception as exc:
                log.warning("the job reaper could not run: %s", exc)

    async def _run(self, job: Job) -> None:
        jobs = self.store.jobs
        progress = Progress()
        with reporting(progress):  # the task copies the context: the work's reports reach `progress`
            work = asyncio.get_running_loop().create_task(self._work(job))
        outcome, beat = "ok", time.monotonic()
        while not work.done():
            await asyncio.wait({work}, timeout=FLUSH_S)
            await self._flush(job, progress)
            if work.done() or time.monotonic() - beat < self.settings.lease_s / 3:
                continue
            beat = time.monotonic()
            outcome = await self._call(lambda: jobs.heartbeat(job, self.settings.lease_s))
            if outcome != "ok":
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
                break
        if outcome == "ok":
            await self._flush(job, progress)  # the last report, before the job is finished
        if outcome == "cancel":
            await self._call(lambda: jobs.stop(job))
            return
        if outcome == "lost":
            log.warning("job %s: the lease was lost; another attempt owns it now", job.id)
            return
        try:
            result, cost = work.result()
        except KeelError as exc:
            self.failed += 1
            transient = exc.status >= 500 or exc.status == 429  # an upstream's trouble: try again later
            said, retry = f"{type(exc).__name__}: {exc.message}", RETRY_S * 2 ** (job.attempts - 1)
            await self._call(lambda: jobs.fail(job, said, retry_in=retry if transient else None))
            return
        except Exception as exc:  # a bug in the work: the job says so; the worker lives on
            self.failed += 1
            log.exception("job %s failed", job.id)
            said = f"{type(exc).__name__}: {exc}"
            await self._call(lambda: jobs.fail(job, said, retry_in=None))
            return
        self.ran += 1
        if result is HELD:
            return  # the work moved the job on itself (keel.review holds it for a person)
        await self._call(lambda: jobs.succeed(job, result, cost_usd=cost))

    async def _flush(self, job: Job, progress: Progress) -> None:
        value = progress.value
        if value is None or value == progress.written:
            return
        progress.written = value
        with contextlib.suppress(Exception):  # progress is best effort; the heartbeat tells a lost lease
            await self._call(lambda: self.store.jobs.report(job, *value))

    async def _work(self, job: Job) -> tuple[Any, float | None]:
        work = self.work.get(job.kind)
        if work is None:  # claimed only by kind, so only a table changed under a running pool
            raise KeelError(f"no worker here runs jobs of kind '{job.kind}'")
        return await work(job)
