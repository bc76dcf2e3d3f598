"""Request validation at the edge: precise messages naming the offending ``param``."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from keel.errors import InvalidRequest
from keel.rag.search import Filters
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
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _model(data: JSON) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        got = "missing" if model is None else f"a {_type(model)}"
        raise InvalidRequest(f"'model' must be a non-empty string (got {got})", param="model")
    return model


def _positive_int(data: JSON, key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"'{key}' must be a positive integer (got {value!r})", param=key)
    return value


def _number(data: JSON, key: str, low: float, high: float) -> None:
    value = data.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be a number from {low:g} to {high:g} (got {value!r})", param=key)


def _messages(data: JSON) -> list[JSON]:
    messages = data.get("messages")
    if not isinstance(messages, list):
        got = "missing" if messages is None else f"a {_type(messages)}"
        raise InvalidRequest(f"'messages' must be an array of messages (got {got})", param="messages")
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages")
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise InvalidRequest(f"'{where}' must be an object (got a {_type(msg)})", param=where)
        role = msg.get("role")
        if not isinstance(role, str) or role not in ROLES:  # a type check first: [] or {} are unhashable
            raise InvalidRequest(
                f"'{where}.role' must be one of {', '.join(sorted(ROLES))} (got {role!r})", param=f"{where}.role"
            )
        content = msg.get("content")
        if content is None and not (role == "assistant" and (msg.get("tool_calls") or msg.get("function_call"))):
            raise InvalidRequest(f"'{where}.content' is required", param=f"{where}.content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequest(
                f"'{where}.content' must be a string or an array of parts (got a {_type(content)})",
                param=f"{where}.content",
            )
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise InvalidRequest(
                        f"'{where}.content[{j}]' must be an object with a 'type'", param=f"{where}.content[{j}]"
                    )
    return messages


def _string_or_none(data: JSON, key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"'{key}' must be a string (got a {_type(value)})", param=key)
    return value


def parse_chat(data: JSON, ctx: CallContext) -> tuple[ChatRequest, bool]:
    """Return the request and whether the client asked for usage in its stream. A ``mode`` (fast,
    accurate…) is kept on the context for the app to map to a model; ``model`` may then be omitted."""
    mode = data.get("mode", ctx.mode)
    if mode is not None:
        if not isinstance(mode, str) or not mode:
            raise InvalidRequest("'mode' must be a string such as fast or accurate", param="mode")
        ctx.mode = mode
        data = {"model": f"mode:{mode}", **data}
    model = _model(data)
    messages = _messages(data)
    stream = data.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest(f"'stream' must be a boolean (got {stream!r})", param="stream")
    max_tokens = _positive_int(data, "max_tokens")
    completion = _positive_int(data, "max_completion_tokens")
    _number(data, "temperature", 0, 2)
    _number(data, "top_p", 0, 1)
    n = _positive_int(data, "n")
    if n is not None and n != 1:
        raise InvalidRequest("'n' other than 1 is not supported; send separate requests", param="n")
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object", param="stream_options")
    user = _string_or_none(data, "user")
    ctx.user = ctx.user or user
    params = {
        k: v
        for k, v in data.items()
        if k not in ("model", "messages", "stream", "max_tokens", "max_completion_tokens", "stream_options", "mode")
    }
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("feature"), str):
        ctx.feature = ctx.feature or metadata["feature"]
    req = ChatRequest(
        model=model, messages=messages, stream=bool(stream), max_tokens=completion or max_tokens, params=params, ctx=ctx
    )
    return req, bool((options or {}).get("include_usage"))


def parse_embeddings(data: JSON, ctx: CallContext) -> tuple[EmbeddingRequest, str]:
    """Return the request and its encoding format (``float`` or ``base64``)."""
    model = _model(data)
    raw = data.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("'input' must be a non-empty string or array of strings", param="input")
    if len(inputs) > MAX_EMBED_INPUTS:
        raise InvalidRequest(f"'input' may hold at most {MAX_EMBED_INPUTS} items (got {len(inputs)})", param="input")
    total = 0
    for i, item in enumerate(inputs):
        if not isinstance(item, str):
            raise InvalidRequest(f"'input[{i}]' must be a string (token arrays are not supported)", param=f"input[{i}]")
        if not item:
            raise InvalidRequest(f"'input[{i}]' is empty", param=f"input[{i}]")
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
    fmt = data.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequest(f"'encoding_format' must be 'float' or 'base64' (got {fmt!r})", param="encoding_format")
    ctx.user = ctx.user or _string_or_none(data, "user")
    return EmbeddingRequest(model=model, inputs=inputs, ctx=ctx), fmt


# -- collections ----------------------------------------------------------------------------------


def bounded_int(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be an integer from {low} to {high} (got {value!r})", param=key)
    return value


def parse_document(item: Any, index: int) -> tuple[str, str, bytes]:
    where = f"documents[{index}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"'{where}' must be an object", param=where)
    doc_id = item.get("id")
    if not isinstance(doc_id, str) or not doc_id.strip() or len(doc_id) > 512:
        raise InvalidRequest(f"'{where}.id' must be a non-empty string of at most 512 characters", param=f"{where}.id")
    kind = item.get("kind", "txt")
    if kind not in ("md", "txt", "html", "pdf"):
        raise InvalidRequest(f"'{where}.kind' must be md, txt, html or pdf", param=f"{where}.kind")
    if isinstance(item.get("text"), str):
        return doc_id, kind, item["text"].encode("utf-8")
    if isinstance(item.get("content_base64"), str):
        try:
            return doc_id, kind, base64.b64decode(item["content_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                f"'{where}.content_base64' is not valid base64", param=f"{where}.content_base64"
            ) from None
    raise InvalidRequest(f"'{where}' needs 'text' or 'content_base64'", param=where)


def parse_filters(raw: Any) -> Filters | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"doc_ids", "doc_prefix", "kinds"}:
        raise InvalidRequest("'filters' takes doc_ids (array), doc_prefix (string) and kinds (array)", param="filters")
    doc_ids, prefix, kinds = raw.get("doc_ids"), raw.get("doc_prefix"), raw.get("kinds")
    for key, value in (("doc_ids", doc_ids), ("kinds", kinds)):
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise InvalidRequest(f"'filters.{key}' must be an array of strings", param=f"filters.{key}")
    if prefix is not None and not isinstance(prefix, str):
        raise InvalidRequest("'filters.doc_prefix' must be a string", param="filters.doc_prefix")
    return Filters(
        frozenset(doc_ids) if doc_ids is not None else None, prefix, frozenset(kinds) if kinds is not None else None
    )
