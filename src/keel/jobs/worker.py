"""Workers: claim jobs from the store, run them, renew their leases, and finish them.

``keel serve`` runs a pool of them in its own event loop (``jobs.workers``, 2 by default); any
other host can run more against the shared store. Each worker claims one job at a time, renews its
lease every third of it while the job runs, and stops the work when the job is cancelled or the
lease is lost. The reaper runs in every pool. A feature job runs the feature under the job's trace
id, so a retried attempt rewrites the same trace row instead of adding one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from keel.config.settings import JobsSettings
from keel.errors import KeelError
from keel.features.pipeline import FeaturePipeline
from keel.store import Store
from keel.store.jobs import Job

log = logging.getLogger("keel.jobs")
Work = Callable[[Job], Awaitable[tuple[Any, float | None]]]  # → (result, cost)
RETRY_S = 2.0  # the first retry's wait; doubled each attempt


class Pool:
    def __init__(self, store: Store, pipeline: FeaturePipeline, settings: JobsSettings, *, poll_s: float = 0.5):
        self.store = store
        self.pipeline = pipeline
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
        while True:
            try:
                job = await self._call(lambda: self.store.jobs.claim(name, self.settings.lease_s))
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
            await asyncio.sleep(max(0.5, self.settings.lease_s / 3))
            try:
                await self._call(self.store.jobs.reap)
            except Exception as exc:
                log.warning("the job reaper could not run: %s", exc)

    async def _run(self, job: Job) -> None:
        jobs = self.store.jobs
        work = asyncio.get_running_loop().create_task(self._work(job))
        outcome = "ok"
        while not work.done():
            done, _ = await asyncio.wait({work}, timeout=self.settings.lease_s / 3)
            if done:
                break
            outcome = await self._call(lambda: jobs.heartbeat(job, self.settings.lease_s))
            if outcome != "ok":
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
                break
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
        await self._call(lambda: jobs.succeed(job, result, cost_usd=cost))

    async def _work(self, job: Job) -> tuple[Any, float | None]:
        if job.kind != "feature":
            raise KeelError(f"no worker runs jobs of kind '{job.kind}'")
        body = job.payload
        report = self.store.jobs.report
        await self._call(lambda: report(job, 0, 1, "running"))
        result = await self.pipeline.run(
            str(job.feature),
            body.get("inputs") or {},
            user=body.get("user"),
            tenant=job.tenant,
            key=body.get("key"),
            label=body.get("label") or "production",
            model=body.get("model"),
            trace_id=job.trace_id,
        )
        await self._call(lambda: report(job, 1, 1, "done"))
        return result.as_dict(), result.cost_usd
