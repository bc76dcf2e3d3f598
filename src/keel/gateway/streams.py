"""Stream helpers shared by the wrappers: where "before the first token" ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from keel.errors import ProviderError, StreamInterrupted
from keel.text import tokens_for_chars, upper_bound_tokens
from keel.types import ChatChunk, ChatRequest, Usage


def _is_token(chunk: ChatChunk) -> bool:
    if chunk.has_content or chunk.usage is not None:
        return True
    return any(c.get("finish_reason") for c in chunk.body.get("choices") or [])


async def prime(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    """Pull chunks up to and including the first token. Errors raised here happened before it,
    so the caller may still retry or fall back: nothing has reached the client."""
    head: list[ChatChunk] = []
    async for chunk in stream:
        head.append(chunk)
        if _is_token(chunk):
            break
    return head


async def relay(head: list[ChatChunk], stream: AsyncIterator[ChatChunk]) -> AsyncIterator[ChatChunk]:
    """Yield the primed head, then the rest. A fault after the first token is a StreamInterrupted:
    the client gets a clear error, never a spliced or silently truncated answer."""
    async with aclosing(stream):  # type: ignore[type-var]
        for chunk in head:
            yield chunk
        try:
            async for chunk in stream:
                yield chunk
        except StreamInterrupted:
            raise
        except ProviderError as exc:
            raise StreamInterrupted(
                f"the stream failed after it started: {exc.message}", provider=exc.provider
            ) from exc


def estimated_usage(req: ChatRequest, streamed_chars: int) -> Usage:
    """Usage for a stream that ended before the provider reported any: the input at its upper bound
    (what admission reserved against), the output from the characters that were streamed."""
    return Usage(
        input_tokens=upper_bound_tokens(req.messages),
        output_tokens=tokens_for_chars(streamed_chars),
        source="estimated",
    )
