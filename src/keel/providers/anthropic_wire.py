"""Anthropic Messages ↔ OpenAI chat shapes, as pure functions testable without HTTP."""

from __future__ import annotations

import time
from typing import Any

import orjson

from keel.errors import BadUpstreamResponse
from keel.types import JSON, ChatChunk, ChatRequest, ChatResponse, Usage

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
DEFAULT_MAX_TOKENS = 4096


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _blocks(content: Any) -> list[JSON]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[JSON] = []
    for part in content or []:
        if isinstance(part, dict) and part.get("type") == "text":
            out.append({"type": "text", "text": part.get("text", "")})
        elif isinstance(part, dict) and part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                out.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                out.append({"type": "image", "source": {"type": "url", "url": url}})
    return out


def _tool_use_blocks(tool_calls: list[JSON]) -> list[JSON]:
    blocks = []
    for call in tool_calls:
        fn = call.get("function") or {}
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = {"_raw": fn.get("arguments")}
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": args})
    return blocks


def _convert_messages(messages: list[JSON]) -> list[JSON]:
    """OpenAI messages → alternating Anthropic turns (tool results travel as user turns)."""
    out: list[JSON] = []
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            continue
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": msg.get("tool_call_id"),
                "content": _text(msg.get("content")),
            }
            turn: JSON = {"role": "user", "content": [block]}
        elif role == "assistant":
            blocks = _blocks(msg.get("content"))
            blocks += _tool_use_blocks(msg.get("tool_calls") or [])
            turn = {"role": "assistant", "content": blocks}
        else:
            turn = {"role": "user", "content": _blocks(msg.get("content"))}
        if out and out[-1]["role"] == turn["role"]:
            out[-1]["content"].extend(turn["content"])
        else:
            out.append(turn)
    return out


def to_request(req: ChatRequest, model: str) -> JSON:
    system = "\n\n".join(_text(m.get("content")) for m in req.messages if m.get("role") in ("system", "developer"))
    body: JSON = {
        "model": model,
        "messages": _convert_messages(req.messages),
        "max_tokens": req.max_tokens or req.params.get("max_completion_tokens") or DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = system
    for key in ("temperature", "top_p"):
        if key in req.params:
            body[key] = req.params[key]
    stop = req.params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = req.params.get("tools")
    if tools:
        body["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
            if t.get("type") == "function"
        ]
    if req.stream:
        body["stream"] = True
    return body


def parse_usage(raw: Any) -> Usage:
    raw = raw if isinstance(raw, dict) else {}
    cached = int(raw.get("cache_read_input_tokens") or 0)
    created = int(raw.get("cache_creation_input_tokens") or 0)
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0) + cached + created,
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_input_tokens=cached,
    )


def from_response(data: JSON, provider: str) -> ChatResponse:
    content = data.get("content")
    if not isinstance(content, list):
        raise BadUpstreamResponse(f"{provider} answered a message without content blocks", provider=provider)
    text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
    tool_calls = [
        {
            "id": b.get("id"),
            "type": "function",
            "function": {"name": b.get("name"), "arguments": orjson.dumps(b.get("input") or {}).decode()},
        }
        for b in content
        if b.get("type") == "tool_use"
    ]
    message: JSON = {"role": "assistant", "content": text or (None if tool_calls else "")}
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = parse_usage(data.get("usage"))
    body: JSON = {
        "id": data.get("id") or f"chatcmpl-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("model") or "",
        "choices": [
            {"index": 0, "message": message, "finish_reason": STOP_REASONS.get(data.get("stop_reason") or "", "stop")}
        ],
        "usage": usage.to_openai(),
    }
    return ChatResponse(body=body, usage=usage, model=str(body["model"]))


class StreamMapper:
    """Turns Anthropic stream events into OpenAI chunks. Stateful: one per stream."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.id = ""
        self.model = ""
        self.usage = Usage()
        self.tool_index: dict[int, int] = {}
        self.finished = False

    def _chunk(self, delta: JSON, finish: str | None = None) -> ChatChunk:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return ChatChunk(body=body)

    def feed(self, event: JSON) -> ChatChunk | None:
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            self.id, self.model = str(msg.get("id", "")), str(msg.get("model", ""))
            self.usage = parse_usage(msg.get("usage"))
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                idx = self.tool_index.setdefault(int(event.get("index", 0)), len(self.tool_index))
                call = {
                    "index": idx,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                return self._chunk({"tool_calls": [call]})
            return None
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return self._chunk({"content": delta.get("text", "")})
            if delta.get("type") == "input_json_delta":
                idx = self.tool_index.get(int(event.get("index", 0)), 0)
                call = {"index": idx, "function": {"arguments": delta.get("partial_json", "")}}
                return self._chunk({"tool_calls": [call]})
            return None
        if kind == "message_delta":
            out = parse_usage(event.get("usage"))
            self.usage.output_tokens = out.output_tokens or self.usage.output_tokens
            reason = (event.get("delta") or {}).get("stop_reason")
            return self._chunk({}, STOP_REASONS.get(reason or "", "stop")) if reason else None
        if kind == "message_stop":
            self.finished = True
            chunk = ChatChunk(
                body={
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": self.model,
                    "choices": [],
                    "usage": self.usage.to_openai(),
                },
                usage=self.usage,
            )
            return chunk
        return None  # ping and unknown events carry nothing
