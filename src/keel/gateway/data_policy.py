"""The data policy as a wrapper: before anything is sent, redact, reroute or refuse (the rules are
``keel.guards.policy``); after, put the redacted values back into the answer, streamed or not.

Everything it wraps — admission, the trace, the provider — sees only the redacted request and the
model's own answer (placeholders, not the originals): the originals exist on this side alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from keel.gateway.router import Gateway
from keel.gateway.wrapper import Endpoint, WrapperProvider, inner
from keel.guards.policy import Decision, StreamRestorer, enforce, restore_answer
from keel.types import ChatChunk, ChatRequest, ChatResponse


class DataPolicy(WrapperProvider):
    def __init__(self, wrapped: Endpoint, gateway: Gateway) -> None:
        super().__init__(wrapped)
        self.gateway = gateway

    def apply(self, req: ChatRequest) -> Decision | None:
        """Rewrite ``req`` in place as the policy demands; None when no policy applies to its alias."""
        policy = self.gateway.settings.data_policy
        route = self.gateway.routes.get(req.model)
        if not policy.enabled or route is None:
            return None
        targets = []
        for name in route.settings.deployments:
            adapter = self.gateway.adapters.get(name)
            if adapter is not None:
                targets.append((name, adapter.info.provider, bool(adapter.info.local)))
        req.messages = list(req.messages)  # rewritten per message, never the caller's list
        req.params = dict(req.params)  # and per field
        decision = enforce(policy, req.messages, targets, req.params)
        if decision.note:
            req.ctx.notes.append(decision.note)
        if decision.reroute:
            req.model = decision.reroute
        return decision

    async def complete(self, req: ChatRequest) -> ChatResponse:
        decision = self.apply(req)
        response = await self.wrapped.complete(req)
        if decision is not None and decision.mapping:
            _restore_body(response, decision)
        return response

    def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Applied before the stream starts; with nothing to restore, the wrapped stream itself (no
        extra step per chunk)."""
        decision = self.apply(req)
        if decision is None or not decision.mapping:
            return self.wrapped.stream(req)
        return self._restoring(req, StreamRestorer(decision.mapping))

    async def _restoring(self, req: ChatRequest, restorer: StreamRestorer) -> AsyncIterator[ChatChunk]:
        async with inner(self.wrapped.stream(req)) as chunks:
            async for chunk in chunks:
                _restore_chunk(chunk, restorer)
                yield chunk


def _restore_chunk(chunk: ChatChunk, restorer: StreamRestorer) -> None:
    choices = chunk.body.get("choices") or []
    if not choices:
        return
    delta = choices[0].setdefault("delta", {})
    text = delta.get("content") if isinstance(delta.get("content"), str) else ""
    out = restorer.feed(text) if text else ""
    if choices[0].get("finish_reason") is not None:
        out += restorer.flush()  # the last chunk carries whatever was held back
    if text or out:
        delta["content"] = out


def _restore_body(response: ChatResponse, decision: Decision) -> None:
    """The redacted values back in every text of the answer: its content and its tool calls' arguments."""
    for choice in response.body.get("choices") or []:
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            message["content"] = restore_answer(message["content"], decision)
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                function["arguments"] = restore_answer(function["arguments"], decision)
