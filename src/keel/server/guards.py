"""keel.yaml ``guards:`` for raw chat calls: size first, then the last user message's injection screen."""

from __future__ import annotations

from keel.config.settings import GatewayGuardSettings
from keel.errors import InvalidRequest
from keel.guards.screen import screen
from keel.text import estimate_tokens
from keel.types import ChatRequest


def guard_chat(guards: GatewayGuardSettings, req: ChatRequest) -> None:
    texts = [m["content"] for m in req.messages if isinstance(m, dict) and isinstance(m.get("content"), str)]
    if guards.max_input_tokens is not None:
        tokens = sum(estimate_tokens(t) for t in texts)
        if tokens > guards.max_input_tokens:
            raise InvalidRequest(
                f"the messages are ~{tokens:,} tokens; guards.max_input_tokens allows {guards.max_input_tokens:,}",
                param="messages",
                code="input_too_long",
            )
    if guards.injection is None:
        return
    last = next(
        (m["content"] for m in reversed(req.messages) if m.get("role") == "user" and isinstance(m.get("content"), str)),
        None,
    )
    if last is None:
        return
    verdict = screen(last, threshold=guards.injection.threshold)
    if not verdict.flagged:
        return
    why = "; ".join(verdict.reasons)
    if guards.injection.action == "block":
        raise InvalidRequest(f"guard 'injection' blocked the last user message: {why}", param="messages",
                             code="prompt_injection")  # fmt: skip
    req.ctx.notes.append(f"guard injection: the last user message was flagged ({why})")
