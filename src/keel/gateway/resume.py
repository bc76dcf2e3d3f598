"""Stream resumption, opt-in with ``retry: {resume_streams: true}``. A stream cut after its first
token is continued, so the client sees one uninterrupted answer.

Without it, a fault after the first token ends the stream with a ``stream_interrupted`` error
event, which is the honest default. With it, the alias's chain (retry, fallback, breaker) is asked
again with the text so far:

- as an assistant prefix to continue, where the first deployment takes prefill (the local model,
  Anthropic);
- otherwise with that prefix followed by a request to continue from exactly where it stopped.

The seam is checked before anything of the continuation reaches the client. If the continuation
starts by repeating the end of the text so far, as models do, the repeat is dropped. Continuation
chunks carry the first stream's id, so the client sees one stream.

Each cut part is charged what it produced: its input at the upper bound plus its streamed text.
That is added to the continuation's reported usage and marked as estimated. The trace notes each
resume. A stream that carries tool calls is never resumed, because half a call cannot be continued.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from keel.errors import StreamInterrupted
from keel.gateway.streams import estimated_usage
from keel.gateway.wrapper import inner
from keel.providers.base import Provider
from keel.text import tokens_for_chars
from keel.types import ChatChunk, ChatRequest, ChatResponse, Usage

CONTINUE = (
    "Your previous answer was cut off. Continue it exactly where it stopped: do not repeat anything "
    "already written, and add no preamble."
)
PREFILL = frozenset({"anthropic", "local"})  # providers that continue a trailing assistant message
SEAM_CHARS = 48  # continuation text held back until the seam is decided
MAX_OVERLAP = 400


class Resumable:
    """Wraps an alias's chat chain (a ``Provider``): calls pass through, streams resume."""

    def __init__(self, wrapped: Provider, *, attempts: int, prefill: bool) -> None:
        self.wrapped = wrapped
        self.info = wrapped.info
        self.attempts = attempts
        self.prefill = prefill

    async def complete(self, req: ChatRequest) -> ChatResponse:
        return await self.wrapped.complete(req)

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        written = ""  # what the client has been sent
        spent = Usage(source="estimated")  # what the cut parts produced
        stream_id: object = None
        resumes = 0
        request = req
        while True:
            seam: Seam | None = Seam(written) if resumes else None
            part = ""
            tools = False
            try:
                async with inner(self.wrapped.stream(request)) as chunks:
                    async for chunk in chunks:
                        if stream_id is None:
                            stream_id = chunk.body.get("id")
                        elif resumes:
                            chunk.body["id"] = stream_id
                        tools = tools or _has_tool_call(chunk)
                        if chunk.usage is not None and resumes:
                            chunk.usage = _plus(chunk.usage, spent)
                        for out in seam.take(chunk) if seam is not None and not seam.decided else [chunk]:
                            part += out.text
                            written += out.text
                            yield out
                    for out in seam.flush() if seam is not None and not seam.decided else []:
                        written += out.text  # a continuation shorter than the seam window
                        yield out
                return
            except StreamInterrupted as exc:
                if tools or resumes >= self.attempts or not written:
                    raise
                spent = _plus(spent, estimated_usage(request, len(part)))
                resumes += 1
                req.ctx.notes.append(f"stream resumed after {len(written):,} characters ({exc.message})")
                left = None if req.max_tokens is None else req.max_tokens - tokens_for_chars(len(written))
                if left is not None and left <= 0:
                    yield _finished(stream_id, "length")
                    return
                request = _continuation(req, written, left, self.prefill)


class Seam:
    """Holds a continuation's first characters back until it is clear whether they repeat the end
    of what was written; then hands them on once, without the repeat."""

    def __init__(self, written: str) -> None:
        self.written = written
        self.held = ""
        self.template: ChatChunk | None = None
        self.decided = False

    def take(self, chunk: ChatChunk) -> list[ChatChunk]:
        """The chunks to send now (the held text, joined and trimmed), or none while still holding."""
        text = chunk.text
        ends = chunk.usage is not None or any(c.get("finish_reason") for c in chunk.body.get("choices") or [])
        if not text and not ends:
            return []  # a role-only opening chunk: the client already had one
        self.held += text
        if text:
            self.template = chunk
        if len(self.held) < SEAM_CHARS and not ends:
            return []
        return self._release(chunk if ends else None)

    def flush(self) -> list[ChatChunk]:
        return self._release(None) if self.held else []

    def _release(self, ending: ChatChunk | None) -> list[ChatChunk]:
        self.decided = True
        lead = len(self.held) - len(self.held.lstrip())  # a continuation may open with a space, then repeat
        repeat = overlap(self.written, self.held[lead:])
        rest = self.held[lead + repeat :] if repeat else self.held
        out = []
        if rest and self.template is not None:
            out.append(_with_text(self.template, rest))
        if ending is not None:
            out.append(_with_text(ending, None))
        return out


def overlap(written: str, cont: str) -> int:
    """How many leading characters of ``cont`` repeat the end of ``written``: the longest such run
    of at least 8 characters, or of whole words (a lone shared letter is no repeat)."""
    written = written.rstrip()
    for k in range(min(len(cont), len(written), MAX_OVERLAP), 0, -1):
        if not written.endswith(cont[:k]):
            continue
        whole = (k == len(cont) or not cont[k].isalnum()) and (k == len(written) or not written[-k - 1].isalnum())
        if k >= 8 or (whole and cont[:k].strip()):
            return k
    return 0


def _continuation(req: ChatRequest, written: str, max_tokens: int | None, prefill: bool) -> ChatRequest:
    messages = [*req.messages, {"role": "assistant", "content": written.rstrip() if prefill else written}]
    if not prefill:
        messages.append({"role": "user", "content": CONTINUE})
    return ChatRequest(
        model=req.model, messages=messages, stream=True, max_tokens=max_tokens, params=req.params, ctx=req.ctx
    )


def _plus(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cached_input_tokens=a.cached_input_tokens + b.cached_input_tokens,
        reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
        source="estimated" if "estimated" in (a.source, b.source) else a.source,
    )


def _with_text(chunk: ChatChunk, text: str | None) -> ChatChunk:
    """A copy of ``chunk`` whose first choice's delta carries ``text`` (None: no content)."""
    body = dict(chunk.body)
    choices = [dict(c) for c in body.get("choices") or []]
    if choices:
        delta = {k: v for k, v in (choices[0].get("delta") or {}).items() if k != "content"}
        choices[0]["delta"] = delta if text is None else {**delta, "content": text}
    elif text is not None:
        choices = [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
    body["choices"] = choices
    return ChatChunk(body=body, usage=chunk.usage)


def _has_tool_call(chunk: ChatChunk) -> bool:
    return any((c.get("delta") or {}).get("tool_calls") for c in chunk.body.get("choices") or [])


def _finished(stream_id: object, reason: str) -> ChatChunk:
    choice = {"index": 0, "delta": {}, "finish_reason": reason}
    return ChatChunk(body={"id": stream_id, "object": "chat.completion.chunk", "choices": [choice]})
