"""A scripted provider: an honest fake that answers from a queue, records every call, and
raises what you tell it to. With an empty queue it echoes the last user message."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from keel.config.settings import DeploymentSettings
from keel.errors import ProviderError
from keel.providers.base import ProviderEnv, ProviderInfo
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Usage


@dataclass
class Reply:
    """One scripted answer. ``fail_after`` raises ``error`` after that many streamed chunks."""

    text: str
    delay: float = 0.0
    chunk_delay: float = 0.0
    fail_after: int | None = None
    error: ProviderError | None = None
    usage: Usage | None = None
    finish_reason: str = "stop"
    tool_calls: list[dict[str, object]] = field(default_factory=list)


Step = Reply | ProviderError | str


def count_words(text: str) -> int:
    return max(1, len(text.split()))


class ScriptedProvider:
    def __init__(
        self,
        name: str = "scripted",
        settings: DeploymentSettings | None = None,
        env: ProviderEnv | None = None,
        *,
        context_window: int | None = None,
        local: bool = False,
    ) -> None:
        model = settings.model if settings else name
        window = (settings.context_window if settings else None) or context_window
        self.info = ProviderInfo(
            deployment=name,
            provider="scripted",
            model=model,
            context_window=window,
            price_model=settings.price_model if settings else None,
            local=local,
        )
        self.script: deque[Step] = deque()
        self.calls: list[ChatRequest] = []
        self.responder: Callable[[ChatRequest], Step] | None = None  # answers when the script is empty

    def enqueue(self, *steps: Step) -> ScriptedProvider:
        self.script.extend(steps)
        return self

    def _next(self, req: ChatRequest) -> Reply:
        self.calls.append(req)
        step: Step
        if self.script:
            step = self.script.popleft()
        elif self.responder is not None:
            step = self.responder(req)
        else:
            last = next((m for m in reversed(req.messages) if m.get("role") == "user"), {})
            content = last.get("content")
            step = f"echo: {content if isinstance(content, str) else ''}"
        if isinstance(step, ProviderError):
            raise step
        return Reply(step) if isinstance(step, str) else step

    def _usage(self, req: ChatRequest, reply: Reply) -> Usage:
        if reply.usage is not None:
            return reply.usage
        prompt = " ".join(str(m.get("content") or "") for m in req.messages)
        return Usage(input_tokens=count_words(prompt), output_tokens=count_words(reply.text))

    async def complete(self, req: ChatRequest) -> ChatResponse:
        reply = self._next(req)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.error is not None:
            raise reply.error
        usage = self._usage(req, reply)
        message: dict[str, object] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = reply.tool_calls
        body = {
            "id": f"chatcmpl-scripted-{len(self.calls)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.info.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": usage.to_openai(),
        }
        return ChatResponse(body=body, usage=usage, model=self.info.model)

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        reply = self._next(req)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        cid = f"chatcmpl-scripted-{len(self.calls)}"

        def chunk(delta: dict[str, object], finish: str | None = None) -> ChatChunk:
            body = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": self.info.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return ChatChunk(body=body)

        pieces = [w + " " for w in reply.text.split(" ")] if reply.text else []
        if pieces:
            pieces[-1] = pieces[-1][:-1]
        yield chunk({"role": "assistant", "content": ""})
        for i, piece in enumerate(pieces):
            if reply.fail_after is not None and i >= reply.fail_after:
                raise reply.error or ProviderError("scripted failure", provider=self.info.deployment)
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            yield chunk({"content": piece})
        if reply.error is not None and reply.fail_after is None:
            raise reply.error
        yield chunk({}, reply.finish_reason)
        usage = self._usage(req, reply)
        body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.info.model,
            "choices": [],
            "usage": usage.to_openai(),
        }
        yield ChatChunk(body=body, usage=usage)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        from keel.testing.vectors import hash_vector

        vectors = [hash_vector(text) for text in req.inputs]
        tokens = sum(count_words(t) for t in req.inputs)
        return EmbeddingResponse(vectors=vectors, usage=Usage(input_tokens=tokens), model=self.info.model)
