"""A job as the API, the CLI and the SDK show it."""

from __future__ import annotations

from typing import Any

from keel.store.jobs import Job


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "object": "job",
        "kind": job.kind,
        "feature": job.feature,
        "status": job.status,
        "progress": {"done": job.done, "total": job.total, "stage": job.stage},
        "result": job.result,
        "error": job.error,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "cost_usd": job.cost_usd,
        "trace_id": job.trace_id,
        "cancel_requested": job.cancel_requested,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "links": {"self": f"/v1/jobs/{job.id}", "cancel": f"/v1/jobs/{job.id}/cancel"},
    }
