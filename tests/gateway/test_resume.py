"""Stream resumption (``retry: {resume_streams: true}``): a stream cut after its first token is
continued on the alias's chain, and the client sees one uninterrupted answer with no repeat at the
seam, over real HTTP with the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from keel.errors import StreamInterrupted
from keel.gateway.resume import CONTINUE, Resumable, overlap
from keel.providers.base import ProviderInfo
from keel.server import build_app
from keel.testing import Fault, FaultServer
from keel.types import ChatChunk, ChatRequest, ChatResponse
from tests.conftest import RunningServer, make_settings

REPLY = (
    "Refunds are issued to the original payment method within five business days. If you paid by card, "
    "the refund shows on your statement as a credit from the same merchant name. Gift card purchases are "
    "refunded as store credit, and shipping fees are refunded only when the item arrived damaged."
)


def serve(home: Path, upstream: FaultServer, provider: str = "openai", resume: str = "true") -> RunningServer:
    model = "claude-haiku-4-5" if provider == "anthropic" else "gpt-4o-mini"
    settings = make_settings(
        f"deployments:\n  up: {{provider: {provider}, model: {model}, base_url: '{upstream.base_url}'}}\n"
        f"models:\n  up: {{deployments: [up], retry: {{attempts: 2, base_delay_s: 0, resume_streams: {resume}}}}}\n"
    )
    return RunningServer(build_app(settings, home, auth=False))


def stream_text(server: RunningServer, **extra: object) -> tuple[str, set[str], list[object]]:
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="up", messages=[{"role": "user", "content": "How do refunds work?"}], stream=True,
            stream_options={"include_usage": True}, temperature=0, **extra,  # type: ignore[arg-type]
        )
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, {c.id for c in chunks}, [c.usage for c in chunks if c.usage]


@pytest.mark.parametrize("repeats", [0, 3], ids=["clean seam", "model repeats itself"])
def test_a_cut_stream_is_continued_with_no_seam(home: Path, repeats: int) -> None:
    with FaultServer(reply=REPLY, resume_overlap=repeats) as upstream:
        upstream.inject(Fault.cut(after_chunks=9))
        with serve(home, upstream) as server:
            text, ids, usage = stream_text(server)
            assert server.app.service.writer is not None and server.app.service.writer.flush()
        assert text == REPLY  # temperature 0: exactly the uncut answer, nothing repeated at the seam
        assert len(ids) == 1  # one stream, as far as the client can tell
        continuation = upstream.requests[-1][1]["messages"]
        assert continuation[-2]["role"] == "assistant" and REPLY.startswith(continuation[-2]["content"])
        assert continuation[-1] == {"role": "user", "content": CONTINUE}  # OpenAI takes no prefill
        assert usage and usage[-1].completion_tokens > 0
    rows = read_all(home)
    row = next(r for r in rows if r.operation == "chat")
    assert row.status == "ok" and any("stream resumed after" in n for n in row.notes or [])
    assert row.usage_source == "estimated" and len(row.attempts) == 2  # the cut part is charged too
    assert row.response == REPLY


def test_prefill_providers_continue_the_assistant_turn_itself(home: Path) -> None:
    with FaultServer(reply=REPLY, resume_overlap=2) as upstream:
        upstream.inject(Fault.cut(after_chunks=6))
        with serve(home, upstream, provider="anthropic") as server:
            text, ids, _ = stream_text(server)
        assert text == REPLY and len(ids) == 1
        last = upstream.requests[-1][1]["messages"][-1]
        assert last["role"] == "assistant"  # a prefix to continue: no instruction needed
        prefix = last["content"] if isinstance(last["content"], str) else last["content"][0]["text"]
        assert REPLY.startswith(prefix) and prefix == prefix.rstrip()  # Anthropic refuses trailing whitespace


def test_without_resume_streams_a_cut_is_a_clear_error(home: Path) -> None:
    with FaultServer(reply=REPLY) as upstream:
        upstream.inject(Fault.cut(after_chunks=6))
        with serve(home, upstream, resume="false") as server, pytest.raises(openai.APIError, match="stream"):
            stream_text(server)


def test_the_continuation_respects_max_tokens(home: Path) -> None:
    with FaultServer(reply=REPLY) as upstream:
        upstream.inject(Fault.cut(after_chunks=9))
        with serve(home, upstream) as server:
            stream_text(server, max_tokens=30)
        budget = upstream.requests[-1][1].get("max_tokens") or upstream.requests[-1][1].get("max_completion_tokens")
        assert budget is not None and 0 < budget < 30  # what the first part produced is taken off


def test_overlap_takes_whole_repeats_only() -> None:
    assert overlap("paid by card, the refund", " the refund shows") == len(" the refund")
    assert overlap("within five business", " days") == 0
    assert overlap("the cat", "t sat") == 0  # one shared letter is not a repeat
    assert overlap("state credit from the same merchant na", "merchant name") == len("merchant na")
    assert overlap("issued to the", "to the original") == len("to the")


class _ToolThenCut:
    info = ProviderInfo(deployment="d", provider="openai", model="m")

    async def complete(self, req: ChatRequest) -> ChatResponse:  # pragma: no cover - streams only here
        raise NotImplementedError

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        call = {"index": 0, "id": "c1", "function": {"name": "lookup", "arguments": '{"or'}}
        yield ChatChunk(body={"id": "s", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
        raise StreamInterrupted("cut")


async def test_a_stream_with_a_tool_call_is_never_resumed() -> None:
    resumable = Resumable(_ToolThenCut(), attempts=2, prefill=False)
    got = []
    with pytest.raises(StreamInterrupted):
        async for chunk in resumable.stream(ChatRequest(model="up", messages=[{"role": "user", "content": "x"}])):
            got.append(chunk)
    assert len(got) == 1  # half a tool call cannot be continued: the error stands


def read_all(home: Path) -> list[Any]:
    from keel.store import Store, db_path

    with Store.at(db_path(home)) as store:
        return list(store.traces.find(tenant=None, limit=50))
