"""Context-window policies: never silently overflow the model's window.

- ``fail``: a clear error with the numbers.
- ``truncate_history``: keep every system message and the newest turns that fit; the latest user
  turn always stays (if even that does not fit, it is an error, not a silent cut).

Token counts for hosted models are an estimate (~4 characters a token plus per-message overhead)
and are labelled as one; pass an exact counter when the model's tokenizer is available.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keel.errors import InvalidRequest

Counter = Callable[[str], int]
PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    return len(text) // 4 + 1


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


@dataclass(frozen=True, slots=True)
class Fitted:
    messages: list[dict[str, Any]]
    tokens: int
    dropped: int
    estimated: bool


def message_tokens(messages: list[dict[str, Any]], count: Counter) -> int:
    return sum(count(_content(m)) + PER_MESSAGE for m in messages)


def fit(
    messages: list[dict[str, Any]], *, window: int, max_output: int, policy: str = "fail", count: Counter | None = None
) -> Fitted:
    counter = count or estimate_tokens
    budget = window - max_output
    total = message_tokens(messages, counter)
    if total <= budget:
        return Fitted(messages, total, 0, count is None)
    label = "estimated " if count is None else ""
    if policy == "fail":
        raise InvalidRequest(
            f"the prompt is {total} {label}tokens; with {max_output} for the answer it exceeds the "
            f"{window}-token window (use a larger model or the truncate_history policy)",
            param="messages",
            code="context_length_exceeded",
        )
    if policy != "truncate_history":
        raise InvalidRequest(f"context policy '{policy}' is not available here", param="context")
    system = [m for m in messages if m.get("role") in ("system", "developer")]
    turns = [m for m in messages if m.get("role") not in ("system", "developer")]
    used = message_tokens(system, counter)
    kept: list[dict[str, Any]] = []
    for message in reversed(turns):
        cost = counter(_content(message)) + PER_MESSAGE
        if used + cost > budget:
            break
        kept.insert(0, message)
        used += cost
    if not kept or (turns and kept[-1] is not turns[-1]):
        raise InvalidRequest(
            f"even the latest message does not fit the {window}-token window with {max_output} tokens for the answer",
            param="messages",
            code="context_length_exceeded",
        )
    return Fitted(system + kept, used, len(turns) - len(kept), count is None)
