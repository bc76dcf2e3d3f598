"""Context-window policies: never silently overflow the model's window.

- ``fail``: a clear error with the numbers.
- ``truncate_history``: keep every system message and the newest turns that fit; the latest user
  turn always stays (if even that does not fit, it is an error, not a silent cut).
- ``map_reduce``: a document too long for the window is cut into pieces that fit, each piece is
  summarised by the model (map, a few at a time), the summaries are joined (reduce), and the round
  repeats until the whole fits — so a 500-page document works. Bounded rounds; beyond them, an error.

Token counts for hosted models are an estimate (~4 characters a token plus per-message overhead)
and are labelled as one; pass an exact counter when the model's tokenizer is available.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keel.errors import InvalidRequest
from keel.features.result import Plan
from keel.gateway.service import GatewayService
from keel.progress import report
from keel.text import estimate_tokens
from keel.types import CallContext, ChatRequest

Counter = Callable[[str], int]
PER_MESSAGE = 4


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
            f"{window}-token window ({_remedy(messages, budget, counter)})",
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


def _remedy(messages: list[dict[str, Any]], budget: int, counter: Counter) -> str:
    """What would help: dropping old turns only helps when the system messages and the latest turn fit
    without them; one long input needs summarising (or a larger model)."""
    system = [m for m in messages if m.get("role") in ("system", "developer")]
    turns = [m for m in messages if m.get("role") not in ("system", "developer")]
    if len(turns) > 1 and message_tokens([*system, turns[-1]], counter) <= budget:
        return "use a larger model, or context: {policy: truncate_history} to drop the oldest turns"
    return "use a larger model, or context: {policy: map_reduce} to summarise the long input piece by piece"


MAP_PROMPT = (
    'Below is part {part} of {parts} of a long document. Summarise it for the task "{task}": keep '
    "every fact, number, name, date and defined term that could matter; drop the rest. Reply with the "
    "summary only.\n\n{text}"
)


def split_text(text: str, max_tokens: int, count: Counter | None = None) -> list[str]:
    """Pieces of at most ``max_tokens`` each, cut at paragraph breaks, then lines, then hard."""
    counter = count or estimate_tokens
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for para in text.split("\n\n"):
        cost = counter(para) + 1
        if cost > max_tokens:  # one paragraph bigger than a piece: cut it by characters
            if current:
                pieces.append("\n\n".join(current))
                current, used = [], 0
            step = max(1, len(para) * max_tokens // cost)
            pieces.extend(para[i : i + step] for i in range(0, len(para), step))
            continue
        if used + cost > max_tokens and current:
            pieces.append("\n\n".join(current))
            current, used = [], 0
        current.append(para)
        used += cost
    if current:
        pieces.append("\n\n".join(current))
    return [p for p in pieces if p.strip()]


@dataclass(frozen=True, slots=True)
class Reduced:
    text: str
    rounds: int
    calls: int


async def map_reduce(
    service: GatewayService,
    *,
    model: str,
    text: str,
    task: str,
    fits_tokens: int,
    window: int,
    ctx: CallContext,
    summary_tokens: int = 512,
    concurrency: int = 4,
    max_rounds: int = 4,
    max_summaries: int = 200,
    count: Counter | None = None,
) -> Reduced:
    """Summarise ``text`` until it fits in ``fits_tokens``. Every map call is a traced child of ``ctx``.

    The work is bounded before it starts and while it runs: the summaries a document needs are
    estimated from its first round's pieces (each round shrinks by at most piece/summary), and a
    document needing more than ``max_summaries`` is refused before any call; a round whose summaries
    are not at least a fifth shorter than what they summarise stops the run (more rounds would only spend)."""
    counter = count or estimate_tokens
    piece_tokens = window - summary_tokens - counter(MAP_PROMPT) - counter(task) - 2 * PER_MESSAGE
    if piece_tokens < 64:
        raise InvalidRequest(
            f"the {window}-token window is too small to map-reduce with {summary_tokens}-token summaries",
            param="context",
        )
    gate = asyncio.Semaphore(concurrency)
    calls = 0
    first = len(split_text(text, piece_tokens, count))
    needed = _estimate(first, piece_tokens, summary_tokens, max_rounds)
    if needed > max_summaries:
        raise InvalidRequest(
            f"the document needs about {needed} summaries ({first} pieces of {piece_tokens} tokens in the first "
            f"round alone), over context.max_summaries ({max_summaries}); raise it, or use a model with a "
            "larger window",
            param="context",
            code="context_length_exceeded",
        )
    for round_ in range(1, max_rounds + 1):
        pieces = split_text(text, piece_tokens, count)
        before = counter(text)
        if calls + len(pieces) > max_summaries:
            raise InvalidRequest(
                f"map_reduce would pass context.max_summaries ({max_summaries}) in round {round_} "
                f"({calls} summaries made, {len(pieces)} more needed)",
                param="context",
                code="context_length_exceeded",
            )
        total, stage = calls + len(pieces), f"summaries (round {round_})"
        report(calls, total, stage)

        sizes: list[tuple[int, int]] = []  # (piece, summary) tokens of this round so far

        async def summarise(part: int, piece: str, parts: int) -> str:
            nonlocal calls
            async with gate:
                prompt = MAP_PROMPT.format(part=part, parts=parts, task=task[:500], text=piece)
                if len(sizes) >= EARLY and _not_shrinking(sizes):  # noqa: B023  # another's already said so
                    raise asyncio.CancelledError
                reply = await service.chat(
                    ChatRequest(
                        model=model,
                        messages=[{"role": "user", "content": prompt}],
                        max_tokens=summary_tokens,
                        ctx=ctx.child(),
                    )
                )
                calls += 1
                report(calls, total, stage)  # noqa: B023  # this round's, read while the round runs
                sizes.append((counter(piece), counter(reply.text)))  # noqa: B023
                if len(sizes) >= EARLY and len(sizes) < parts and _not_shrinking(sizes):  # noqa: B023
                    raise InvalidRequest(
                        f"map_reduce stopped after {calls} summaries: they are no shorter than what they summarise "
                        f"({sum(b for _, b in sizes)} tokens from {sum(a for a, _ in sizes)}); the model is not "  # noqa: B023
                        "summarising, so the other pieces would only spend",
                        param="context",
                        code="context_length_exceeded",
                    )
            return reply.text.strip()

        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the summaries still running
                tasks = [group.create_task(summarise(i, p, len(pieces))) for i, p in enumerate(pieces, 1)]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first failure, as the caller would have seen it
        summaries = [t.result() for t in tasks]
        text = "\n\n".join(f"[part {i}] {s}" for i, s in enumerate(summaries, 1))
        if counter(text) <= fits_tokens:
            return Reduced(text, round_, calls)
        if len(pieces) == 1:
            break  # a single piece that does not shrink will not shrink next round either
        if counter(text) > 0.8 * before:
            raise InvalidRequest(
                f"map_reduce stopped: round {round_}'s {len(pieces)} summaries are {counter(text)} tokens, against "
                f"{before} summarised — not getting shorter ({calls} summaries made); the model is not "
                "summarising, so more rounds would only spend",
                param="context",
                code="context_length_exceeded",
            )
    raise InvalidRequest(
        f"the document is still {counter(text)} tokens after {calls} summaries; it does not fit "
        f"{fits_tokens} tokens under any policy (use a model with a larger window)",
        param="context",
        code="context_length_exceeded",
    )


EARLY = 4  # summaries of a round after which one that does not shrink is stopped


def _not_shrinking(sizes: list[tuple[int, int]]) -> bool:
    return sum(b for _, b in sizes) > 0.8 * sum(a for a, _ in sizes)


def _estimate(first: int, piece_tokens: int, summary_tokens: int, rounds: int) -> int:
    """Summaries for a document whose first round has ``first`` pieces, if each summary is at most
    ``summary_tokens``: each round's text is at most pieces × summary, re-split into pieces."""
    total, pieces = 0, first
    for _ in range(rounds):
        total += pieces
        if pieces <= 1:
            break
        pieces = max(1, math.ceil(pieces * (summary_tokens + 8) / piece_tokens))
    return total


async def reduce_input(
    service: GatewayService, plan: Plan, inputs: dict[str, Any], window: int, messages: list[dict[str, Any]]
) -> tuple[str, str]:
    """``context.policy: map_reduce``: the input to reduce (``context.input``, else the longest text)
    and its map-reduced text, sized so the rendered prompt fits the window."""
    spec = plan.spec
    key = spec.context.input or max(
        (k for k, v in inputs.items() if isinstance(v, str)), key=lambda k: len(inputs[k]), default=None
    )
    if key is None or not isinstance(inputs.get(key), str):
        raise InvalidRequest(
            f"map_reduce needs a text input to reduce (context.input: {key or 'none found'})", param="context"
        )
    document = str(inputs[key])
    others = estimate_tokens(" ".join(m["content"] for m in messages)) - estimate_tokens(document)
    fits = window - plan.max_output - others - 64
    task = " ".join(str(v) for k, v in inputs.items() if k != key and isinstance(v, str)) or spec.description
    reduced = await map_reduce(
        service,
        model=plan.model,
        text=document,
        task=task or spec.name,
        fits_tokens=fits,
        window=window,
        ctx=plan.ctx,
        summary_tokens=spec.context.summary_tokens,
        max_summaries=spec.context.max_summaries,
    )
    plan.result.notes.append(f"context: '{key}' map-reduced in {reduced.rounds} round(s) of {reduced.calls} summaries")
    return key, reduced.text
