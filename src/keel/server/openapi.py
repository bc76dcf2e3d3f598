"""``GET /openapi.json``: the OpenAPI 3.1 document of the routes this app serves.

Request bodies are the trees that validate them (``keel.server.validate``), rendered as JSON
Schema. Paths and methods are read from the app's own route table. So a body rule or a route
cannot change without the document changing with it. An operation needs one line here for its
summary; a route without one is left out, and a test fails when that happens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute, Route

from keel import __version__
from keel.server.batches import BATCH
from keel.server.jobs import QUERY as JOB_QUERY
from keel.server.review import ADD, DECISION
from keel.server.review import QUERY as REVIEW_QUERY
from keel.server.schema import Obj
from keel.server.traces import MAX_PAGE, QUERY
from keel.server.validate import (
    CHAT,
    COLLECTION,
    DOCUMENTS_ADD,
    EMBEDDINGS,
    FEATURE_JOB,
    FEATURE_RUN,
    FEEDBACK,
    SEARCH,
)


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    body: Obj | None = None
    ok: int = 200
    streams: bool = False  # may answer text/event-stream (when the body asks to stream)
    public: bool = False  # answered without an API key
    text: bool = False  # answers text/plain (metrics)
    tag: str = "gateway"
    upload: bool = False  # takes multipart/form-data: a file and its purpose (/v1/files)
    answers: str | None = None  # a content type other than JSON (a file's bytes)


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/v1/chat/completions"): Operation("Create a chat completion (OpenAI-compatible)", CHAT, streams=True),
    ("POST", "/v1/embeddings"): Operation("Create embeddings (OpenAI-compatible)", EMBEDDINGS),
    ("GET", "/v1/models"): Operation("List the model aliases this gateway serves"),
    ("POST", "/v1/feedback"): Operation("Attach feedback to a trace", FEEDBACK, ok=201, tag="traces"),
    ("GET", "/v1/traces"): Operation("List traces, newest first (filters and a cursor)", tag="traces"),
    ("GET", "/v1/traces/{trace_id}"): Operation("One trace, with its spans and feedback", tag="traces"),
    ("GET", "/v1/collections"): Operation("List collections", tag="retrieval"),
    ("POST", "/v1/collections"): Operation("Create (or open) a collection", COLLECTION, ok=201, tag="retrieval"),
    ("GET", "/v1/collections/{name}/documents"): Operation("List a collection's documents", tag="retrieval"),
    ("POST", "/v1/collections/{name}/documents"): Operation(
        "Add or replace documents (unchanged ones are skipped)", DOCUMENTS_ADD, tag="retrieval"
    ),
    ("DELETE", "/v1/collections/{name}/documents/{doc_id}"): Operation("Delete a document", tag="retrieval"),
    ("POST", "/v1/collections/{name}/search"): Operation("Hybrid search", SEARCH, tag="retrieval"),
    ("POST", "/v1/features/{name}/run"): Operation("Run a feature", FEATURE_RUN, streams=True, tag="features"),
    ("POST", "/v1/features/{name}/jobs"): Operation(
        "Queue a feature run as a durable job (honours Idempotency-Key)", FEATURE_JOB, ok=202, tag="jobs"
    ),
    ("GET", "/v1/jobs"): Operation("List jobs, newest first (status, feature, a cursor)", tag="jobs"),
    ("GET", "/v1/jobs/{job_id}"): Operation("One job: status, progress, result or error, attempts, cost", tag="jobs"),
    ("GET", "/v1/jobs/{job_id}/events"): Operation(
        "A job's progress as server-sent events (progress…, then done)", streams=True, tag="jobs"
    ),
    ("POST", "/v1/jobs/{job_id}/cancel"): Operation(
        "Cancel a job (a running one stops at its next heartbeat)", tag="jobs"
    ),
    ("GET", "/v1/files"): Operation("List files (OpenAI-compatible; purpose filter)", tag="batches"),
    ("POST", "/v1/files"): Operation("Upload a batch input, JSONL (purpose batch)", upload=True, tag="batches"),
    ("GET", "/v1/files/{file_id}"): Operation("One file", tag="batches"),
    ("DELETE", "/v1/files/{file_id}"): Operation("Delete a file", tag="batches"),
    ("GET", "/v1/files/{file_id}/content"): Operation(
        "A file's bytes (a batch's output and error files)", answers="application/jsonl", tag="batches"
    ),
    ("GET", "/v1/batches"): Operation("List batches, newest first (after, limit)", tag="batches"),
    ("POST", "/v1/batches"): Operation("Create a batch over an uploaded file", BATCH, tag="batches"),
    ("GET", "/v1/batches/{batch_id}"): Operation("One batch: status, request counts, files, cost", tag="batches"),
    ("POST", "/v1/batches/{batch_id}/cancel"): Operation(
        "Cancel a batch (finished lines are kept in its output file)", tag="batches"
    ),
    ("GET", "/v1/review/items"): Operation("List review items, oldest first (queue, status, a cursor)", tag="review"),
    ("POST", "/v1/review/items"): Operation("Send a feature run to a review queue by hand", ADD, ok=201, tag="review"),
    ("GET", "/v1/review/items/{item_id}"): Operation(
        "One review item: question, answer, cited sources, guard scores, prompt, model, cost", tag="review"
    ),
    ("POST", "/v1/review/items/{item_id}/claim"): Operation("Claim an item (a lock with a time limit)", tag="review"),
    ("POST", "/v1/review/items/{item_id}/release"): Operation("Give a claim back", tag="review"),
    ("POST", "/v1/review/items/{item_id}/decision"): Operation(
        "Approve, edit or reject a claimed item (a held job ends with it)", DECISION, tag="review"
    ),
    ("POST", "/v1/review/queues/{queue}/claim"): Operation("Claim a queue's oldest unclaimed item", tag="review"),
    ("GET", "/v1/review/stats"): Operation(
        "Per-queue backlog, SLA breaches, decision rates and confidence agreement", tag="review"
    ),
    ("GET", "/healthz"): Operation("Liveness", public=True, tag="operations"),
    ("GET", "/metrics"): Operation("Prometheus metrics", public=True, text=True, tag="operations"),
    ("GET", "/openapi.json"): Operation("This document", public=True, tag="operations"),
}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
SSE_EVENT = {  # each server-sent event (a chunk, or an `event: error` with the error body as its data)
    "type": "object",
    "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}},
}
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def routes_of(routes: Sequence[BaseRoute]) -> list[tuple[str, str]]:
    """Every (method, OpenAPI path) of the API the route table serves (HEAD aside; the dashboard's
    HTML pages under /ui are not API)."""
    out = []
    for route in routes:
        if isinstance(route, Route) and not route.path.startswith("/ui"):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                out.append((method, _PARAM.sub(r"{\1}", route.path)))
    return out


def document(
    routes: Sequence[BaseRoute],
    *,
    models: Mapping[str, Sequence[str]] | None = None,
    modes: Sequence[str] = (),
) -> dict[str, Any]:
    """``models``: the aliases this gateway serves, by body (``ChatCompletionRequest``,
    ``EmbeddingRequest``), and ``modes`` its modes (fast, accurate…): published as the values the
    ``model`` and ``mode`` fields take."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR}
    for method, path in routes_of(routes):
        op = OPERATIONS.get((method, path))
        if op is not None:
            paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, schemas)
    for name, body in schemas.items():
        props = body.get("properties", {})
        if "model" in props and models and models.get(name):
            props["model"]["enum"] = list(models[name])
        if "mode" in props:
            if modes:
                props["mode"]["anyOf"][0]["enum"] = list(modes)
            else:
                del props["mode"]  # no modes configured: the field does nothing here
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Keel",
            "version": __version__,
            "description": "An OpenAI-compatible gateway with retrieval, features, traces and budgets. Errors "
            "have OpenAI's shape and an x-keel-trace-id header naming their trace.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "a Keel API key"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(method: str, path: str, op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = (
        {"text/plain": {"schema": {"type": "string"}}}
        if op.text
        else {"application/json": {"schema": {"type": "object"}}}
    )
    if op.answers:
        ok = {op.answers: {"schema": {"type": "string"}}}
    if op.streams:
        ok["text/event-stream"] = {"schema": SSE_EVENT}
    slug = _PARAM.sub(r"by_\1", path).replace("/", "_").replace(".", "_")
    out: dict[str, Any] = {
        "operationId": f"{method.lower()}{slug}",
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {
            str(op.ok): {"description": "done", "content": ok},
            "default": {
                "description": "an error, in OpenAI's shape",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if (method, path) == ("POST", "/v1/features/{name}/run"):
        held = "held for review (the feature's review.mode: hold): the job that ends with the reviewed answer"
        out["responses"]["202"] = {"description": held, "content": {"application/json": {"schema": {"type": "object"}}}}
    if op.public:
        out["security"] = []
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in _PARAM.findall(path)
    ]
    if (method, path) == ("GET", "/v1/traces"):
        params += [_query(name) for name in sorted(QUERY)]
    if (method, path) == ("GET", "/v1/jobs"):
        params += [_query(name) for name in sorted(JOB_QUERY)]
    if (method, path) == ("GET", "/v1/review/items"):
        params += [_query(name) for name in sorted(REVIEW_QUERY)]
    if (method, path) == ("GET", "/v1/review/stats"):
        params += [_query("queue")]
    if (method, path) == ("GET", "/v1/batches"):
        params += [_query("after"), _query("limit", 100)]
    if (method, path) == ("GET", "/v1/files"):
        params += [_query("purpose"), _query("limit", 10_000)]
    if params:
        out["parameters"] = params
    if op.upload:
        form = {
            "type": "object",
            "required": ["file", "purpose"],
            "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"enum": ["batch"]}},
        }
        out["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": form}}}
    if op.body is not None:
        name = op.body.name or f"{out['operationId']}_body"
        schemas[name] = op.body.published()
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    return out


def _query(name: str, most: int = MAX_PAGE) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if name == "limit":
        schema = {"type": "integer", "minimum": 1, "maximum": most}
    return {"name": name, "in": "query", "required": False, "schema": schema}
