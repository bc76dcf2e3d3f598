"""keel.yaml ``guards:`` for raw chat calls, through the one input-guard step (keel.guards.inputs):
every message's text sized, the last user message screened for injection."""

from __future__ import annotations

from keel.config.settings import GatewayGuardSettings
from keel.guards.inputs import InputGuard
from keel.types import ChatRequest


def guard_chat(guards: GatewayGuardSettings, req: ChatRequest) -> None:
    inject = guards.injection
    guard = InputGuard(
        max_tokens=guards.max_input_tokens,
        limit_name="max_input_tokens",
        allows="guards.max_input_tokens allows",
        inject=inject is not None,
        threshold=inject.threshold if inject is not None else None,
        action=inject.action if inject is not None else "block",
    )
    texts = {
        f"message {i}": m["content"]
        for i, m in enumerate(req.messages)
        if isinstance(m, dict) and isinstance(m.get("content"), str)
    }
    last = next(
        (m["content"] for m in reversed(req.messages) if m.get("role") == "user" and isinstance(m.get("content"), str)),
        None,
    )
    note = guard.check(texts, {"the last user message": last} if last is not None else {}, what="messages")
    if note is not None:
        req.ctx.notes.append(note)
