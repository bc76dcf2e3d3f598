"""The OpenAI-compatible Batch API: ``/v1/files`` (upload a JSONL input, read an output) and
``/v1/batches`` (create, read, list, cancel). Routes only: a batch's lines run as a job on the
worker pool (``keel.jobs.batches``); its files and lines live in the store, scoped by tenant, so
the key that created a batch reads its output from any replica."""

from __future__ import annotations

import asyncio
from typing import Any

from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import BatchNotFound, FileNotFound, InvalidRequest, JobConflict, PayloadTooLarge
from keel.jobs.batch_input import ENDPOINTS, parse_input, window_seconds, worst_by_model
from keel.jobs.batches import KIND, batch_json
from keel.server.auth import caller_of
from keel.server.jobs import JobRoutes
from keel.server.responses import json_response
from keel.server.schema import Obj, Text
from keel.server.validate import page_limit
from keel.store.batches import ENDED, Batch
from keel.store.db import encode_keyset
from keel.store.files import StoredFile

BATCH_PRIORITY = -10  # feature jobs first; a batch's lines also queue behind interactive calls
MAX_PAGE = 100
BATCH = Obj(
    {
        "input_file_id": Text(nonempty=True, description="a file uploaded with purpose batch"),
        "endpoint": Text(nonempty=True, description=" or ".join(ENDPOINTS)),
        "completion_window": Text(nonempty=True, description="24h (or 1h to 168h)"),
        "metadata": Obj(values=None, says="up to 16 string pairs"),
        "webhook": Text(nonempty=True, description="Keel: an http(s) URL told when the batch ends"),
    },
    required=("input_file_id", "endpoint", "completion_window"),
    extra=False,
    name="BatchCreate",
    description="a batch over an uploaded JSONL file, as the OpenAI Batch API takes it",
)


def file_json(f: StoredFile) -> dict[str, Any]:
    return {
        "id": f.id,
        "object": "file",
        "bytes": f.bytes,
        "created_at": int(f.created),
        "expires_at": int(f.expires) if f.expires is not None else None,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "status_details": None,
    }


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 16 or not all(isinstance(k, str) and len(k) <= 64 for k in value):
        raise InvalidRequest("metadata holds at most 16 keys of up to 64 characters", param="metadata")
    if not all(isinstance(v, str) and len(v) <= 512 for v in value.values()):
        raise InvalidRequest("metadata values are strings of up to 512 characters", param="metadata")
    return dict(value)


class BatchRoutes:
    def __init__(self, jobs: JobRoutes, guard: Any, read_body: Any) -> None:
        self.jobs = jobs
        self.store = jobs.store
        self.guard = guard
        self.read_body = read_body  # (request, limit) → bytes, 413 above the limit
        self.settings = jobs.keel.batches

    def routes(self) -> list[Route]:
        return [
            Route("/v1/files", self.guard(self.files), methods=["GET", "POST"]),
            Route("/v1/files/{file_id}", self.guard(self.file), methods=["GET", "DELETE"]),
            Route("/v1/files/{file_id}/content", self.guard(self.content), methods=["GET"]),
            Route("/v1/batches", self.guard(self.batches), methods=["GET", "POST"]),
            Route("/v1/batches/{batch_id}", self.guard(self.batch), methods=["GET"]),
            Route("/v1/batches/{batch_id}/cancel", self.guard(self.cancel), methods=["POST"]),
        ]

    # -- files ---------------------------------------------------------------------------------------
    async def files(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        if request.method == "GET":
            wanted = request.query_params.get("purpose") or None
            limit = page_limit(request.query_params, 20, 10_000)
            found = await self.store.db.call(lambda: self.store.files.find(tenant=tenant, purpose=wanted, limit=limit))
            return json_response(
                {"object": "list", "data": [file_json(f) for f in found], "has_more": len(found) == limit}
            )
        kind, _ = parse_options_header(request.headers.get("content-type", ""))
        if kind != b"multipart/form-data":
            raise InvalidRequest("upload a file as multipart/form-data with the fields file and purpose", param="file")
        request._body = await self.read_body(request, self.settings.max_file_bytes + 64 * 1024)
        try:
            async with request.form(max_files=1, max_fields=8, max_part_size=self.settings.max_file_bytes) as form:
                purpose: Any = form.get("purpose")
                upload = form.get("file")
                if purpose != "batch":
                    raise InvalidRequest("purpose must be 'batch' (the only files Keel keeps)", param="purpose")
                if not isinstance(upload, UploadFile):
                    raise InvalidRequest("the form has no file field holding the JSONL input", param="file")
                content = await upload.read()
                filename = (upload.filename or "input.jsonl")[:255]
        except HTTPException as exc:  # the multipart parser's refusals, in the OpenAI error shape
            raise InvalidRequest(f"the upload is not a form Keel can read: {exc.detail}", param="file") from None
        if len(content) > self.settings.max_file_bytes:
            raise PayloadTooLarge(
                f"the file is {len(content):,} bytes; the limit is {self.settings.max_file_bytes:,} "
                "(batches.max_file_bytes)"
            )
        if not content.strip():
            raise InvalidRequest("the file is empty; a batch input holds one JSON request per line", param="file")
        lines = content.count(b"\n") + (0 if content.endswith(b"\n") else 1)
        if lines > self.settings.max_lines:
            raise PayloadTooLarge(
                f"the file has {lines:,} lines; a batch takes at most {self.settings.max_lines:,} (batches.max_lines)"
            )
        keep = self.settings.file_retention_days * 86400
        made = await self.store.db.call(
            lambda: self.store.files.create(tenant, "batch", filename, content, keep_s=keep)
        )
        return json_response(file_json(made))

    async def _file(self, request: Request) -> StoredFile:
        tenant, file_id = caller_of(request).tenant, request.path_params["file_id"]
        found = await self.store.db.call(lambda: self.store.files.get(file_id, tenant=tenant))
        if found is None:
            raise FileNotFound(f"no file '{file_id[:80]}'")
        return found

    async def file(self, request: Request) -> Response:
        found = await self._file(request)
        if request.method == "DELETE":
            await self.store.db.call(lambda: self.store.files.delete(found.id, tenant=found.tenant))
            return json_response({"id": found.id, "object": "file", "deleted": True})
        return json_response(file_json(found))

    async def content(self, request: Request) -> Response:
        found = await self._file(request)
        data = await self.store.db.call(lambda: self.store.files.content(found.id, tenant=found.tenant))
        if data is None:
            raise FileNotFound(f"no file '{found.id}'")
        return Response(data, media_type="application/jsonl")

    # -- batches -------------------------------------------------------------------------------------
    async def batches(self, request: Request) -> Response:
        return await (self._list(request) if request.method == "GET" else self._create(request))

    async def _create(self, request: Request) -> Response:
        caller = caller_of(request)
        tenant = caller.tenant
        body = await self.jobs.parse_body(request)
        BATCH.check(body)
        endpoint = body["endpoint"]
        if endpoint not in ENDPOINTS:
            raise InvalidRequest(
                f"endpoint must be one of {', '.join(ENDPOINTS)}, not {endpoint[:80]!r}", param="endpoint"
            )
        window = window_seconds(body["completion_window"])
        metadata = _metadata(body.get("metadata"))
        webhook = await self.jobs.webhook_of(body)
        file_id = body["input_file_id"]
        found = await self.store.db.call(lambda: self.store.files.get(file_id, tenant=tenant))
        if found is None or found.purpose != "batch":
            raise FileNotFound(f"no batch input file '{file_id[:80]}' (upload one with purpose batch)")
        content = await self.store.db.call(lambda: self.store.files.content(file_id, tenant=tenant)) or b""
        requests, broken = await asyncio.to_thread(parse_input, content, endpoint, self.settings.max_lines)
        runner = self.jobs.runtime.batches
        worst = worst_by_model(runner.admission, endpoint, requests)
        reserved = sum(n for n, _ in worst.values()) / 1e9
        made = await self.store.db.call(
            lambda: self.store.batches.create(
                tenant,
                endpoint=endpoint,
                input_file_id=file_id,
                completion_window=body["completion_window"],
                window_s=window,
                total=len(requests) + len(broken),
                metadata=metadata,
                key=caller.key,
                reserved_usd=reserved,
            )
        )
        try:
            await runner.admission.reserve_batch(made.id, tenant, caller.key, worst, window + 3600)
        except Exception:
            await self.store.db.call(
                lambda: self.store.batches.move(made.id, ["validating"], "failed", errors=[_refused()])
            )
            raise
        job, _ = await self.store.db.call(
            lambda: self.store.jobs.enqueue(
                tenant,
                KIND,
                {"batch_id": made.id},
                priority=BATCH_PRIORITY,
                max_attempts=100,  # a batch outlives restarts: its window bounds it, not its attempts
                webhook=webhook,
            )
        )
        await self.store.db.call(lambda: self.store.batches.attach(made.id, job.id))
        self.jobs.nudge()
        return await self._shown(await self._get(tenant, made.id))

    async def _get(self, tenant: str, batch_id: str) -> Batch:
        found = await self.store.db.call(lambda: self.store.batches.get(batch_id, tenant=tenant))
        if found is None:
            raise BatchNotFound(f"no batch '{batch_id[:80]}'")
        return found

    async def _shown(self, batch: Batch, status: int = 200) -> Response:
        done, failed, cost = await self.store.db.call(lambda: self.store.batches.counts(batch.id))
        return json_response(batch_json(batch, (done, failed), cost), status)

    async def batch(self, request: Request) -> Response:
        found = await self._get(caller_of(request).tenant, request.path_params["batch_id"])
        return await self._shown(await self.jobs.runtime.batches.expire_if_due(found))

    async def cancel(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        found = await self._get(tenant, request.path_params["batch_id"])
        if found.status in ENDED:
            raise JobConflict(f"batch {found.id} already {found.status}; there is nothing to cancel")
        moved = await self.store.db.call(
            lambda: self.store.batches.move(found.id, ["validating", "in_progress"], "cancelling")
        )
        batch = moved or await self._get(tenant, found.id)
        job = await self.store.db.call(lambda: self.store.jobs.get(batch.job_id or "", tenant=None))
        if job is None or job.status == "queued":  # no worker holds it: end it here
            if job is not None:
                await self.store.db.call(lambda: self.store.jobs.cancel(job.id, tenant=None))
            batch = await self.jobs.runtime.batches.end(batch, ending="cancelled")
        return await self._shown(batch)

    async def _list(self, request: Request) -> Response:
        tenant = caller_of(request).tenant
        limit = page_limit(request.query_params, 20, MAX_PAGE)
        after = request.query_params.get("after")
        cursor = None
        if after:
            anchor = await self._get(tenant, after)
            cursor = encode_keyset(anchor.created, anchor.id)
        rows = await self.store.db.call(lambda: self.store.batches.find(tenant=tenant, cursor=cursor, limit=limit + 1))
        page = rows[:limit]
        data = []
        for b in page:
            done, failed, cost = await self.store.db.call(lambda b=b: self.store.batches.counts(b.id))
            data.append(batch_json(b, (done, failed), cost))
        return json_response(
            {
                "object": "list",
                "data": data,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": len(rows) > limit,
            }
        )


def _refused() -> dict[str, Any]:
    return {
        "code": "budget_exceeded",
        "message": "a budget cannot hold this batch's worst case",
        "line": None,
        "param": None,
    }
