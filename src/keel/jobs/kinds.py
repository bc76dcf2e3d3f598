"""What a job of each built-in kind does: ``feature`` runs a feature (map_reduce reports its
summaries), ``ingest`` indexes documents into a collection (reporting documents). A feature job runs
under the job's trace id, so a retried attempt rewrites the same trace row instead of adding one.
The edge adds the kinds that need it (``eval``, ``batch``)."""

from __future__ import annotations

import base64
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from keel.errors import KeelError
from keel.features.pipeline import FeaturePipeline, FeatureResult
from keel.jobs.worker import HELD, Work
from keel.progress import receiver, report
from keel.rag.ingest import ingest_documents
from keel.rag.loaders import load_bytes
from keel.store.jobs import Job

#: Called with a feature job's finished run; True when it took the job on (held it for review).
Handoff = Callable[[Job, FeatureResult], Awaitable[bool]]


def feature_work(pipeline: FeaturePipeline, handoff: Handoff | None = None) -> Work:
    async def run(job: Job) -> tuple[Any, float | None]:
        body = job.payload
        report(0, None, "running")
        result = await pipeline.run(
            str(job.feature),
            body.get("inputs") or {},
            user=body.get("user"),
            tenant=job.tenant,
            key=body.get("key"),
            label=body.get("label") or "production",
            model=body.get("model"),
            trace_id=job.trace_id,
        )
        if handoff is not None and result.review is not None and await handoff(job, result):
            report(1, 1, "awaiting review")
            return HELD, result.cost_usd
        report(1, 1, "done")
        return result.as_dict(), result.cost_usd

    return run


def ingest_payload(collection: str, documents: list[tuple[str, str, bytes]]) -> dict[str, Any]:
    """An ingest job's payload: the documents as the HTTP route decoded them (id, kind, bytes)."""
    return {
        "collection": collection,
        "documents": [{"id": i, "kind": k, "b64": base64.b64encode(raw).decode()} for i, k, raw in documents],
    }


def ingest_work(pipeline: FeaturePipeline) -> Work:
    async def run(job: Job) -> tuple[Any, float | None]:
        collections = pipeline.collections
        if collections is None:
            raise KeelError("this worker has no collections configured (retrieval: in keel.yaml)")
        body = job.payload
        items = body["documents"]
        col = await collections.run(lambda: collections.get(body["collection"], tenant=job.tenant))
        sources = [
            (d["id"], d["id"], functools.partial(load_bytes, base64.b64decode(d["b64"]), d["kind"], d["id"], d["id"]))
            for d in items
        ]
        done, tell = 0, receiver()

        def seen(_: str) -> None:  # called in the collections' thread
            nonlocal done
            done += 1
            tell(done, len(items), "documents")

        tell(0, len(items), "documents")
        result = await collections.run(lambda: ingest_documents(col, sources, progress=seen))
        return {
            "indexed": result.indexed,
            "unchanged": result.unchanged,
            "skipped": [{"id": where, "reason": reason} for where, reason in result.skipped],
            "chunks": result.chunks,
        }, None

    return run


def builtin_work(pipeline: FeaturePipeline, handoff: Handoff | None = None) -> dict[str, Work]:
    return {"feature": feature_work(pipeline, handoff), "ingest": ingest_work(pipeline)}
