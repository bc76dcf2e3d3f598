"""``llm-rubric``: a model grades the answer against a rubric, through the gateway (so its calls are
traced and priced like any other). Judges flip between runs, so a rubric can run ``runs`` times and
aggregate by ``mean`` or ``majority``. The judge answers in a JSON shape the gateway constrains it
to; a reply that still cannot be read is an error of the case — never a silent score.

    {type: llm-rubric, rubric: "Says the refund takes 5–10 business days", runs: 3, aggregate: majority}
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence
from typing import Any

import orjson

from keel.checks.base import CheckContext, CheckError, Judge, JudgeError, Verdict
from keel.checks.builtin import Params, Run
from keel.checks.schema import parse_and_validate

SCALE = (1, 2, 3, 4, 5)
RUBRIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": 400},
        "score": {"type": "integer", "enum": list(SCALE)},
    },
    "required": ["reason", "score"],
    "additionalProperties": False,
}
SYSTEM = (
    "You grade an AI assistant's answer against a rubric. Judge only what the rubric asks. "
    'Reply with JSON only: {"reason": "<one or two sentences>", "score": <1-5>} where 5 means the answer '
    "fully meets the rubric, 3 partly, and 1 not at all."
)


def require_judge(ctx: CheckContext, check: str) -> Judge:
    if ctx.judge is None:
        raise CheckError(f"check '{check}' calls a model; run it through keel eval (which supplies the judge)")
    return ctx.judge


def read_reply(text: str, schema: dict[str, Any], check: str) -> dict[str, Any]:
    """The judge's JSON object, validated; anything else raises ``JudgeError`` quoting the reply."""
    value, problem = parse_and_validate(text, schema)
    if problem is not None or not isinstance(value, dict):
        shown = text.strip().replace("\n", " ")[:160] or "(empty)"
        raise JudgeError(f"check '{check}': the judge's reply is not a verdict ({problem}): {shown!r}")
    return value


def _show(value: Any, limit: int = 4000) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= limit else text[:limit] + " …[cut]"


def llm_rubric(p: Params) -> Run:
    rubric = p.get("rubric", str)
    if not rubric.strip():
        raise CheckError(f"check '{p.check}': 'rubric' is empty")
    runs = int(p.number("runs", 1, 1, 9))
    aggregate = p.get("aggregate", str, "mean")
    if aggregate not in ("mean", "majority"):
        raise CheckError(f"check '{p.check}': 'aggregate' is mean or majority, not {aggregate!r}")
    threshold = p.number("threshold", 0.5, 0, 1)
    model = p.get("model", str, None)
    # several runs only mean something when the judge samples; one run is greedy unless told otherwise
    temperature = p.number("temperature", 0.7 if runs > 1 else 0.0, 0, 2)
    p.needs_llm = True

    async def run(ctx: CheckContext) -> Verdict:
        judge = require_judge(ctx, p.check)
        content = (
            f"Rubric:\n{rubric}\n\nInput:\n{_show(ctx.inputs) if ctx.inputs else '(none)'}\n\n"
            + (f"Reference answer:\n{_show(ctx.expected)}\n\n" if ctx.expected is not None else "")
            + f"Answer to grade:\n{_show(ctx.output) or '(empty)'}"
        )
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
        replies = await asyncio.gather(
            *(
                judge(messages, schema=RUBRIC_SCHEMA, model=model, temperature=temperature, max_tokens=200)
                for _ in range(runs)
            )
        )
        graded = [read_reply(text, RUBRIC_SCHEMA, p.check) for text in replies]
        return combine([int(g["score"]) for g in graded], [str(g["reason"]) for g in graded], aggregate, threshold)

    return run


def combine(scores: Sequence[int], reasons: Sequence[str], aggregate: str, threshold: float) -> Verdict:
    """Several 1–5 grades → one verdict: ``mean`` of the normalised scores against the threshold, or a
    ``majority`` of runs that pass it on their own."""
    normal = [(s - 1) / 4 for s in scores]
    shown = ", ".join(str(s) for s in scores)
    if aggregate == "majority":
        votes = sum(n >= threshold for n in normal)
        passed = votes * 2 > len(normal)
        score = votes / len(normal)
        summary = f"{votes}/{len(normal)} runs pass (scores {shown})"
    else:
        score = statistics.fmean(normal)
        passed = score >= threshold
        summary = f"mean {score:.2f} (scores {shown}; threshold {threshold:g})"
    # the reason of a run that agrees with the verdict explains it best
    agreeing = [r for n, r in zip(normal, reasons, strict=True) if (n >= threshold) == passed]
    return Verdict(passed, score, f"{summary}: {(agreeing or list(reasons))[0]}")
