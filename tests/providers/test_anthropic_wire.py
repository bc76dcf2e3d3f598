from __future__ import annotations

import orjson

from keel.providers import anthropic_wire as wire
from keel.types import ChatRequest


def test_request_maps_system_tools_and_tool_results() -> None:
    req = ChatRequest(
        model="alias",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "user", "content": [{"type": "text", "text": "and tomorrow?"}]},
        ],
        max_tokens=100,
        params={
            "temperature": 0.3,
            "stop": "END",
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        },
    )
    body = wire.to_request(req, "claude-x")
    assert body["system"] == "be brief" and body["model"] == "claude-x" and body["max_tokens"] == 100
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][0] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "weather",
        "input": {"city": "Paris"},
    }
    # the tool result and the next user text merge into one user turn, as Anthropic requires
    assert body["messages"][2]["content"][0]["type"] == "tool_result"
    assert body["messages"][2]["content"][1] == {"type": "text", "text": "and tomorrow?"}
    assert body["stop_sequences"] == ["END"] and body["temperature"] == 0.3
    assert body["tools"][0]["input_schema"] == {"type": "object"}


def test_default_max_tokens_is_set() -> None:
    body = wire.to_request(ChatRequest(model="a", messages=[{"role": "user", "content": "hi"}]), "m")
    assert body["max_tokens"] == wire.DEFAULT_MAX_TOKENS


def test_response_maps_text_tools_stop_reason_and_cached_usage() -> None:
    resp = wire.from_response(
        {
            "id": "msg_1",
            "model": "claude-x",
            "stop_reason": "tool_use",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Oslo"}},
            ],
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 5},
        },
        "p",
    )
    choice = resp.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert orjson.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
    assert (resp.usage.input_tokens, resp.usage.cached_input_tokens, resp.usage.output_tokens) == (100, 90, 5)


def test_stream_mapper_produces_openai_chunks_and_final_usage() -> None:
    mapper = wire.StreamMapper("p")
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 12}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]
    chunks = [c for c in (mapper.feed(e) for e in events) if c is not None]
    assert "".join(c.text for c in chunks) == "Hello"
    tool = [c for c in chunks if (c.body["choices"] or [{}])[0].get("delta", {}).get("tool_calls")]
    assert tool[0].body["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "f"
    assert chunks[-2].body["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1].usage is not None and (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (12, 7)
    assert mapper.finished
