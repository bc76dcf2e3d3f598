"""keel.yaml ``guards:`` for raw chat calls, through the one input-guard step (keel.guards.inputs):
every message's text sized, the last user message screened for injection, and every tool result
after it on the ``tool`` channel (where indirect injection arrives in an agent loop)."""

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
    screened: dict[str, str] = {}
    channels: dict[str, str] = {}
    for i in range(len(req.messages) - 1, -1, -1):
        m = req.messages[i]
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            continue
        if m.get("role") == "tool":
            screened[f"tool result {i}"] = m["content"]
            channels[f"tool result {i}"] = "tool"
        elif m.get("role") == "user":
            screened["the last user message"] = m["content"]
            break
    screened = dict(reversed(screened.items()))  # in conversation order
    note = guard.check(texts, screened, what="messages", channels=channels)
    if note is not None:
        req.ctx.notes.append(note)
