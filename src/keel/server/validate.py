"""Request validation at the edge: precise messages naming the offending ``param``."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import orjson

from keel.errors import InvalidRequest
from keel.rag.grouping import GROUP_BY
from keel.rag.loaders import KINDS as BY_EXTENSION
from keel.rag.search import Filters
from keel.server.schema import Array, Boolean, Integer, Number, Obj, OneOf, RequiredUnless, Text, type_name
from keel.text import estimate_tokens
from keel.types import JSON, CallContext, ChatRequest, EmbeddingRequest

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
MAX_EMBED_INPUTS = 2048  # OpenAI's own limits: 2,048 inputs, 8,192 tokens each, 300,000 per request
MAX_EMBED_ITEM_TOKENS = 8192
MAX_EMBED_TOTAL_TOKENS = 300_000


#: The deepest nesting a request body may have. Real requests (tool schemas included) stay far below;
#: deeper bodies only exhaust the recursion of whatever serialises them next.
MAX_DEPTH = 32


def parse_json(raw: bytes) -> JSON:
    if not raw.strip():
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"the request body must be a JSON object, not {type(data).__name__}")
    if _depth_over(data, MAX_DEPTH):
        raise InvalidRequest(f"the request body nests deeper than {MAX_DEPTH} levels; flatten it")
    return data


def _depth_over(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest deeper than ``limit`` (iteratively: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _type(value: Any) -> str:
    return type_name(value)


PART = Obj({"type": Text(nonempty=True)}, required=("type",), says="an object with a 'type'")
TOOL_CALL = Obj(
    {
        "id": Text(),
        "type": Text(),
        "function": Obj({"name": Text(), "arguments": Text(description="JSON text, as the model wrote it")}),
    }
)
MESSAGE = Obj(
    {
        "role": Text(choices=tuple(sorted(ROLES))),
        "content": OneOf(
            (Text(), Array(PART, noun="parts")),
            says="a string or an array of parts",
            description="required, except on an assistant turn that carries tool_calls",
        ),
        "name": Text(),
        "tool_calls": Array(TOOL_CALL, noun="tool calls"),
        "tool_call_id": Text(),
    },
    required=("role",),
    rules=(RequiredUnless("content", {"role": "assistant"}, ("tool_calls", "function_call")),),
    name="ChatMessage",
)
CHAT = Obj(
    {
        "model": Text(nonempty=True, description="a model alias from keel.yaml (GET /v1/models lists them)"),
        "messages": Array(MESSAGE, min_items=1, noun="messages"),
        "stream": Boolean(),
        "stream_options": Obj({"include_usage": Boolean()}),
        "max_tokens": Integer(1),
        "max_completion_tokens": Integer(1),
        "temperature": Number(0, 2),
        "top_p": Number(0, 1),
        "n": Integer(1, 1, says="1 (send separate requests for more choices)"),
        "user": Text(description="the end user, for per-user budgets and traces"),
        "metadata": Obj(description="metadata.feature names the feature for budgets and traces"),
        "mode": Text(nonempty=True, description="fast, accurate…: chooses the model by keel.yaml's modes"),
        "tools": Array(Obj({"type": Text()}), noun="tools"),
    },
    required=("model", "messages"),
    name="ChatCompletionRequest",
    description="OpenAI's chat completion body; fields Keel does not know are forwarded to the provider",
)
EMBEDDINGS = Obj(
    {
        "model": Text(nonempty=True),
        "input": OneOf(
            (
                Text(nonempty=True),
                Array(Text(nonempty=True), min_items=1, max_items=MAX_EMBED_INPUTS, noun="strings"),
            ),
            says="a non-empty string or array of strings",
        ),
        "encoding_format": Text(choices=("float", "base64")),
        "user": Text(),
        "dimensions": Integer(1),
    },
    required=("model", "input"),
    name="EmbeddingRequest",
)


def _model(data: JSON) -> str:
    model = data.get("model")
    assert isinstance(model, str)
    return model


def parse_chat(data: JSON, ctx: CallContext) -> tuple[ChatRequest, bool]:
    """Return the request and whether the client asked for usage in its stream. A ``mode`` (fast,
    accurate…) is kept on the context for the app to map to a model; ``model`` may then be omitted."""
    mode = data.get("mode", ctx.mode)
    if mode is not None:
        CHAT.fields["mode"].check(mode, "mode")
        ctx.mode = mode
        data = {"model": f"mode:{mode}", **data}
    CHAT.check(data)
    model = _model(data)
    messages: list[JSON] = data["messages"]
    options = data.get("stream_options") or {}
    ctx.user = ctx.user or data.get("user")
    params = {
        k: v
        for k, v in data.items()
        if k not in ("model", "messages", "stream", "max_tokens", "max_completion_tokens", "stream_options", "mode")
    }
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("feature"), str):
        ctx.feature = ctx.feature or metadata["feature"]
    req = ChatRequest(
        model=model,
        messages=messages,
        stream=bool(data.get("stream")),
        max_tokens=data.get("max_completion_tokens") or data.get("max_tokens"),
        params=params,
        ctx=ctx,
    )
    return req, bool(options.get("include_usage"))


def parse_embeddings(data: JSON, ctx: CallContext) -> tuple[EmbeddingRequest, str]:
    """Return the request and its encoding format (``float`` or ``base64``)."""
    EMBEDDINGS.check(data)
    model = _model(data)
    raw = data["input"]
    inputs: list[str] = [raw] if isinstance(raw, str) else raw
    total = 0
    for i, item in enumerate(inputs):
        tokens = estimate_tokens(item)
        if tokens > MAX_EMBED_ITEM_TOKENS:
            raise InvalidRequest(
                f"'input[{i}]' is ~{tokens:,} tokens; an input may have {MAX_EMBED_ITEM_TOKENS:,}",
                param=f"input[{i}]",
            )
        total += tokens
    if total > MAX_EMBED_TOTAL_TOKENS:
        raise InvalidRequest(
            f"'input' is ~{total:,} tokens in all; a request may carry {MAX_EMBED_TOTAL_TOKENS:,}: split it",
            param="input",
        )
    ctx.user = ctx.user or data.get("user")
    return EmbeddingRequest(model=model, inputs=inputs, ctx=ctx), data.get("encoding_format") or "float"


# -- collections ----------------------------------------------------------------------------------


MAX_DOCUMENTS_PER_REQUEST = 100
KINDS = ("md", "txt", "html", "pdf")

COLLECTION = Obj(
    {
        "name": Text(nonempty=True, max_length=200),
        "chunk_tokens": Integer(16, 256, description="128 when not given"),
        "overlap": Integer(0, 128),
        "rerank": Text(description="a reranker spec, e.g. local or llm:<alias>"),
    },
    required=("name",),
    name="CollectionCreate",
)
DOCUMENT = Obj(
    {
        "id": Text(nonempty=True, max_length=512),
        "kind": Text(choices=KINDS, description="by default from the id's extension (.md, .html, .pdf…), else txt"),
        "text": Text(description="the document's text (or content_base64)"),
        "content_base64": Text(description="the file's bytes, base64 (a PDF, say)"),
    },
    required=("id",),
    says="an object with an 'id' and 'text' or 'content_base64'",
    name="Document",
)
DOCUMENTS_ADD = Obj(
    {
        "documents": Array(DOCUMENT, min_items=1, max_items=MAX_DOCUMENTS_PER_REQUEST, noun="documents"),
        "async": Boolean(description="queue the ingest as a durable job (202) that reports documents done"),
        "webhook": Text(nonempty=True, description="with async: an http(s) URL told when the ingest ends"),
    },
    required=("documents",),
    name="DocumentsAdd",
)
FILTERS = Obj(
    {"doc_ids": Array(Text(), noun="strings"), "doc_prefix": Text(), "kinds": Array(Text(), noun="strings")},
    extra=False,
    name="SearchFilters",
)
SEARCH = Obj(
    {
        "query": Text(nonempty=True),
        "top_k": Integer(1, 1000),
        "mode": Text(choices=("hybrid", "keyword", "vector")),
        "min_score": Number(),
        "filters": FILTERS,
        "group_by": Text(choices=GROUP_BY, description="document: top_k documents with their chunks"),
        "per_document": Integer(1, 20),
    },
    required=("query",),
    name="SearchRequest",
)
FEATURE_RUN = Obj(
    {
        "inputs": Obj(values=None, says="an object of input names to values"),
        "user": Text(),
        "label": Text(nonempty=True, description="the prompt label to run (production by default)"),
        "stream": Boolean(),
        "mode": Text(nonempty=True),
    },
    name="FeatureRun",
)
FEATURE_JOB = Obj(
    {
        "inputs": Obj(values=None, says="an object of input names to values"),
        "user": Text(),
        "label": Text(nonempty=True, description="the prompt label to run (production by default)"),
        "mode": Text(nonempty=True),
        "webhook": Text(nonempty=True, description="an http(s) URL told when the job ends (Standard Webhooks)"),
    },
    extra=False,
    name="FeatureJob",
    description="the body of /run, without stream: the job's progress is GET /v1/jobs/{id}",
)
FEEDBACK = Obj(
    {
        "trace_id": Text(nonempty=True, description="from the answer's x-keel-trace-id header"),
        "name": Text(nonempty=True, description="helpful, rating…"),
        "value": OneOf((Boolean(), Number(), Text()), says="a boolean, number or string"),
        "comment": Text(),
        "correction": Text(),
        "user": Text(),
    },
    required=("trace_id",),
    extra=False,
    name="FeedbackCreate",
)


def parse_document(item: JSON, index: int) -> tuple[str, str, bytes]:
    """One document of a ``DOCUMENTS`` body that has passed its check: (id, kind, bytes)."""
    where = f"documents[{index}]"
    doc_id = item["id"]
    kind = item.get("kind") or BY_EXTENSION.get(PurePosixPath(doc_id).suffix.lower(), "txt")  # refunds.md: md
    if item.get("text") is not None:
        return doc_id, kind, item["text"].encode("utf-8")
    if item.get("content_base64") is not None:
        try:
            return doc_id, kind, base64.b64decode(item["content_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                f"'{where}.content_base64' is not valid base64", param=f"{where}.content_base64"
            ) from None
    raise InvalidRequest(f"'{where}' needs 'text' or 'content_base64'", param=where)


def parse_filters(raw: JSON | None) -> Filters | None:
    """The ``filters`` of a ``SEARCH`` body that has passed its check."""
    if raw is None:
        return None
    doc_ids, prefix, kinds = raw.get("doc_ids"), raw.get("doc_prefix"), raw.get("kinds")
    return Filters(
        frozenset(doc_ids) if doc_ids is not None else None, prefix, frozenset(kinds) if kinds is not None else None
    )


def page_limit(query: Mapping[str, str], default: int, most: int) -> int:
    """A listing's ``?limit=``: a whole number from 1 to ``most`` (``default`` when absent)."""
    try:
        limit = int(query.get("limit") or default)
    except ValueError:
        raise InvalidRequest("limit must be a whole number", param="limit") from None
    if not 1 <= limit <= most:
        raise InvalidRequest(f"limit must be 1 to {most}", param="limit")
    return limit
