"""The Batch API's work: read a batch's JSONL input, run each line through the gateway as a batch
line (budget held by the batch, priced at the deployment's batch discount, behind interactive
calls), keep each line's result once, and end the batch with its output and error files.

A batch's job may be retried (a worker killed, the store away for a while): each attempt skips the
lines already kept, and a line's trace id is derived from the batch and line number, so a line run
again rewrites its trace row instead of adding one. A batch that passes its window ends
``expired`` with its finished lines in the output file and the rest in the error file; a cancelled
one the same. Its budget hold is settled once, by whichever writer ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from keel.config.jobs import BatchSettings
from keel.cost.budgets import to_nano
from keel.errors import InvalidRequest
from keel.gateway.admission import Admission
from keel.jobs.batch_input import Request, line_worst, parse_input
from keel.progress import report
from keel.store import Store
from keel.store.batches import ENDED, Batch, Line
from keel.store.jobs import Job
from keel.types import CallContext

KIND = "batch"
WATCH_S = 0.5  # how often a running batch looks for a cancel and its window's end
NAMESPACE = uuid.UUID("6f1b8c1e-8a39-4d59-9a55-0c1d6a1b7e40")
Caller = Callable[[str, dict[str, Any], CallContext], Awaitable[tuple[int, dict[str, Any]]]]


def batch_json(batch: Batch, counts: tuple[int, int] | None = None, cost: float | None = None) -> dict[str, Any]:
    """A batch as the OpenAI API shows it (with Keel's cost beside it)."""
    done, failed = counts or (0, 0)

    def ts(value: float | None) -> int | None:
        return int(value) if value is not None else None

    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": int(batch.created),
        "in_progress_at": ts(batch.in_progress_at),
        "expires_at": int(batch.expires),
        "finalizing_at": ts(batch.finalizing_at),
        "completed_at": ts(batch.completed_at),
        "failed_at": ts(batch.failed_at),
        "expired_at": ts(batch.expired_at),
        "cancelling_at": ts(batch.cancelling_at),
        "cancelled_at": ts(batch.cancelled_at),
        "request_counts": {"total": batch.total, "completed": done, "failed": failed},
        "metadata": batch.metadata,
        "cost_usd": cost,
        "reserved_usd": batch.reserved_usd,
        "job_id": batch.job_id,
    }


def line_trace_id(batch_id: str, line: int) -> str:
    return uuid.uuid5(NAMESPACE, f"{batch_id}:{line}").hex


def _output(batch_id: str, line: Line) -> bytes:
    ident = "batch_req_" + hashlib.sha256(f"{batch_id}:{line.line}".encode()).hexdigest()[:24]
    response = (
        {"status_code": line.status_code, "request_id": line.trace_id, "body": line.body}
        if line.status_code is not None
        else None
    )
    return orjson.dumps({"id": ident, "custom_id": line.custom_id, "response": response, "error": line.error})


class BatchRunner:
    def __init__(self, store: Store, admission: Admission, call: Caller, settings: BatchSettings) -> None:
        self.store = store
        self.admission = admission
        self.call = call
        self.settings = settings

    async def _db(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(fn)

    async def work(self, job: Job) -> tuple[Any, float | None]:
        """The ``batch`` job kind: run what is left of the batch, then end it."""
        batches = self.store.batches
        batch = await self._db(lambda: batches.get(job.payload["batch_id"], tenant=job.tenant))
        if batch is None:
            return {"batch_id": job.payload["batch_id"], "status": "gone"}, None
        if batch.status == "validating":
            batch = await self._db(lambda: batches.move(batch.id, ["validating"], "in_progress")) or batch
        if batch.status == "in_progress":
            batch = await self._run_lines(batch)
        if batch.status not in ENDED:
            batch = await self.end(batch)
        done, failed, cost = await self._db(lambda: batches.counts(batch.id))
        return {"batch_id": batch.id, "status": batch.status, "completed": done, "failed": failed}, cost

    async def _run_lines(self, batch: Batch) -> Batch:
        batches, files = self.store.batches, self.store.files
        content = await self._db(lambda: files.content(batch.input_file_id, tenant=batch.tenant))
        if content is None:
            moved = await self._db(
                lambda: batches.move(
                    batch.id,
                    ["in_progress"],
                    "failed",
                    errors=[
                        {
                            "code": "input_file_missing",
                            "message": "the input file was deleted before the batch ran",
                            "line": None,
                            "param": "input_file_id",
                        }
                    ],
                )
            )
            return moved or batch
        requests, broken = parse_input(content, batch.endpoint, 10**9)  # validated when it was created
        kept = await self._db(lambda: batches.finished_lines(batch.id))
        for b in broken:
            if b.line not in kept:
                line = Line(
                    b.line,
                    b.custom_id or "",
                    False,
                    None,
                    None,
                    {"code": "invalid_line", "message": f"line {b.line}: {b.message}", "line": b.line},
                    None,
                    None,
                )
                await self._db(lambda line=line: batches.record(batch.id, line))  # type: ignore[misc]
        todo = [r for r in requests if r.line not in kept]
        finished = batch.total - len(todo)
        report(finished, batch.total, "lines")
        stop: dict[str, str] = {}
        watcher = asyncio.get_running_loop().create_task(self._watch(batch, stop))
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(r: Request) -> None:
            nonlocal finished
            async with gate:
                if stop:
                    return
                line = await self._line(batch, r)
                await self._db(lambda: batches.record(batch.id, line))
            finished += 1
            report(finished, batch.total, "lines")

        try:
            await asyncio.gather(*(one(r) for r in todo))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        # every line ran unless the watcher stopped them (a cancel, or the window's end)
        fresh = await self._db(lambda: batches.get(batch.id, tenant=None))
        return await self.end(fresh or batch, ending=stop.get("why"))

    async def _watch(self, batch: Batch, stop: dict[str, str]) -> None:
        """Stop the lines when the batch is cancelled or its window (as stored now) closes."""
        expires = batch.expires
        while True:
            await asyncio.sleep(WATCH_S)
            with contextlib.suppress(Exception):  # the store away: the lines' own writes will say so
                now = await self._db(lambda: self.store.batches.get(batch.id, tenant=None))
                if now is not None and now.status == "cancelling":
                    stop["why"] = "cancelled"
                    return
                expires = now.expires if now is not None else expires
            if time.time() >= expires:
                stop["why"] = "expired"
                return

    async def _line(self, batch: Batch, r: Request) -> Line:
        ctx = CallContext(
            tenant=batch.tenant, key=batch.key, user=r.body.get("user") if isinstance(r.body.get("user"), str) else None
        )
        ctx.trace_id, ctx.batch = line_trace_id(batch.id, r.line), batch.id
        ctx.notes.append(f"batch {batch.id} line {r.line} ({r.custom_id[:80]})")
        try:
            status, body = await self.call(batch.endpoint, dict(r.body), ctx)
        except Exception as exc:  # the caller answers errors as bodies; this is a bug, kept on the line
            status, body = 500, {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}}
        ok = 200 <= status < 300
        cost = ctx.record.cost_usd if ctx.record is not None else None
        error = None
        if not ok:
            found = body.get("error")
            err: dict[str, Any] = found if isinstance(found, dict) else {}
            error = {"code": err.get("code") or err.get("type"), "message": err.get("message"), "line": r.line}
        return Line(r.line, r.custom_id, ok, status, body, error, cost, ctx.trace_id)

    # -- the end ------------------------------------------------------------------------------------
    async def end(self, batch: Batch, *, ending: str | None = None) -> Batch:
        """End a batch: ``completed`` after ``finalizing`` (every line ran), else ``expired`` or
        ``cancelled`` with what finished. Writes the output and error files, settles the budget hold
        once. A batch another writer ended is returned as that writer left it."""
        batches = self.store.batches
        if batch.status == "cancelling":
            ending = "cancelled"
        ending = ending or "completed"
        if ending == "completed":
            moved = await self._db(lambda: batches.move(batch.id, ["in_progress", "validating"], "finalizing"))
            if moved is None:
                return await self._db(lambda: batches.get(batch.id, tenant=None)) or batch
            batch = moved
            report(batch.total, batch.total, "finalizing")
        out_id, err_id, spent = await self._db(lambda: self._write_files(batch, ending))
        final = await self._db(
            lambda: batches.move(
                batch.id,
                ["in_progress", "validating", "finalizing", "cancelling"],
                ending,
                output_file_id=out_id,
                error_file_id=err_id,
            )
        )
        if final is None:  # another writer ended it first: its files stand, ours go
            for fid in (out_id, err_id):
                if fid is not None:
                    await self._db(lambda fid=fid: self.store.files.delete(fid, tenant=batch.tenant))  # type: ignore[misc]
            return await self._db(lambda: batches.get(batch.id, tenant=None)) or batch
        await self.admission.settle_batch(batch.id, batch.tenant, batch.key, spent)
        ended: Batch = final
        return ended

    def _write_files(self, batch: Batch, ending: str) -> tuple[str | None, str | None, dict[str, tuple[int, int]]]:
        """Output (lines that succeeded) and error file (the rest, and lines that never ran), and what
        the batch spent per model — an unpriced line counted at its worst case, never as zero."""
        files, keep = self.store.files, self.settings.file_retention_days * 86400
        content = files.content(batch.input_file_id, tenant=batch.tenant) or b""
        try:
            requests, _ = parse_input(content, batch.endpoint, 10**9)
        except InvalidRequest:
            requests = []
        by_line = {r.line: r for r in requests}
        out, err = bytearray(), bytearray()
        spent: dict[str, tuple[int, int]] = {}
        seen: set[int] = set()
        for line in self.store.batches.lines(batch.id):
            seen.add(line.line)
            (out if line.ok else err).extend(_output(batch.id, line) + b"\n")
            req = by_line.get(line.line)
            if req is not None and line.status_code is not None:
                model, worst, tokens = line_worst(self.admission, batch.endpoint, req.body)
                nusd = to_nano(line.cost_usd) if line.cost_usd is not None else worst
                was = spent.get(model, (0, 0))
                spent[model] = (was[0] + nusd, was[1] + tokens)
        why = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(ending, "not_run")
        said = {
            "batch_expired": "the batch's completion window passed before this line ran",
            "batch_cancelled": "the batch was cancelled before this line ran",
        }.get(why, "this line did not run")
        for r in requests:
            if r.line not in seen:
                line = Line(
                    r.line, r.custom_id, False, None, None, {"code": why, "message": said, "line": r.line}, None, None
                )
                err.extend(_output(batch.id, line) + b"\n")
        for r in requests:  # models with a hold but nothing spent: release them too
            model = str(r.body.get("model") or "")
            spent.setdefault(model, (0, 0))
        out_id = (
            files.create(batch.tenant, "batch_output", f"{batch.id}_output.jsonl", bytes(out), keep_s=keep).id
            if out
            else None
        )
        err_id = (
            files.create(batch.tenant, "batch_output", f"{batch.id}_error.jsonl", bytes(err), keep_s=keep).id
            if err
            else None
        )
        return out_id, err_id, spent

    async def expire_if_due(self, batch: Batch) -> Batch:
        """A reader's check: a batch past its window whose job no worker holds ends ``expired`` now
        (nobody else would end it); one a worker runs is left to that worker."""
        if batch.status in ENDED or time.time() < batch.expires:
            return batch
        job_id = batch.job_id
        job = await self._db(lambda: self.store.jobs.get(job_id, tenant=None)) if job_id else None
        if job is not None and job.status == "running":
            return batch
        if job is not None and not job.finished_state:
            with contextlib.suppress(Exception):
                await self._db(lambda: self.store.jobs.cancel(job.id, tenant=None))
        return await self.end(batch, ending="expired")
