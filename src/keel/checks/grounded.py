"""``grounded``: is each claim of the answer supported by the sources it was given?

The answer is split into sentences; sentences with fewer than three content words ("Yes.", "Hope this
helps!") are not claims. A claim is supported by a source when most of its content words are in it
(``min_support``, 0.7), or when it is a close paraphrase of one of its sentences (embedding cosine
≥ 0.8 with at least 40% of the words) — and, either way, every number in the claim appears in that
source and the claim does not negate the sentence it matches (or the other way round). Numbers and
negations are what a bag of words and a bi-encoder both miss, and the commonest ways a support
answer goes wrong. ``method: llm`` asks a judge instead.

    {type: grounded, threshold: 0.8}        # ≥ 80% of claims supported
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.checks.base import CheckContext, CheckError, JudgeError, Verdict
from keel.checks.builtin import DONT_KNOW, Params, Run
from keel.checks.judged import read_reply, require_judge
from keel.text import content_words, negated, numbers, uncited

# sentence ends, blank lines, and line starts that open a list item or heading — not the single
# newlines of hard-wrapped text, which sit mid-sentence in most Markdown sources
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[`*]?[A-Z0-9])|\n\s*\n|\n(?=\s*(?:[-*•#|]|\d{1,2}[.)])\s)")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
MIN_WORDS = 3
PARAPHRASE_COSINE, PARAPHRASE_COVERAGE = 0.8, 0.4


def sentences(text: str) -> list[str]:
    parts = (_BULLET.sub("", uncited(s)).strip() for s in _SPLIT.split(text))
    return [s for s in parts if s]


@dataclass(frozen=True, slots=True)
class Claim:
    text: str
    support: float
    supported: bool
    why: str
    source: int | None = None  # the index of the source that supports it best


def claims_of(answer: str) -> list[str]:
    """The sentences that state something: not greetings, not "I don't know"."""
    return [s for s in sentences(answer) if is_claim(s)]


def is_claim(sentence: str) -> bool:
    return len(content_words(sentence)) >= MIN_WORDS and not _abstains(sentence)


def _abstains(sentence: str) -> bool:
    low = sentence.casefold().replace("’", "'")
    return any(phrase in low for phrase in DONT_KNOW)


class Grounding:
    """The support rule over one set of sources, read once: a claim is supported by a source when
    ``min_support`` of its content words are in it (or it paraphrases one of its sentences), every
    number it states is in that source, and it does not negate the source's closest sentence."""

    def __init__(self, sources: Sequence[str], *, min_support: float = 0.7) -> None:
        self.min_support = min_support
        self.split = [sentences(s) or [s] for s in sources]
        self.bags = [set(content_words(s)) for s in sources]
        self.numbers = [numbers(list(b)) for b in self.bags]

    def best(self, claim: str, cosines: Any = None) -> Claim:
        """The source that supports ``claim`` best (``cosines``: its similarity to each source)."""
        if not self.bags:
            return Claim(claim, 0.0, False, "no sources were given")
        words = set(content_words(claim))
        wanted = numbers(list(words))
        best: Claim | None = None
        for j, bag in enumerate(self.bags):
            coverage = len(words & bag) / len(words) if words else 0.0
            cosine = float(cosines[j]) if cosines is not None else 0.0
            paraphrase = cosine >= PARAPHRASE_COSINE and coverage >= PARAPHRASE_COVERAGE
            support = max(coverage, cosine if paraphrase else 0.0)
            why = f"support {support:.2f} from source [{j + 1}]"
            ok = support >= self.min_support or paraphrase
            if ok and not wanted <= self.numbers[j]:
                ok, why = False, f"{', '.join(sorted(wanted - self.numbers[j]))} is not in source [{j + 1}]"
            if ok:
                closest = max(self.split[j], key=lambda s: len(words & set(content_words(s))))
                if negated(claim) != negated(closest):
                    ok, why = False, f"negation differs from source [{j + 1}]: {closest[:80]!r}"
            candidate = Claim(claim, support, ok, why, j)
            if best is None or (candidate.supported, candidate.support) > (best.supported, best.support):
                best = candidate
        assert best is not None
        if not best.supported and wanted and not any(wanted <= n for n in self.numbers):
            best = Claim(claim, 0.0, False, f"{', '.join(sorted(wanted))} appears in no source")
        return best


def assess(
    answer: str,
    sources: Sequence[str],
    *,
    min_support: float = 0.7,
    embed: Callable[[list[str]], Any] | None = None,
) -> list[Claim]:
    """Each claim of ``answer`` with its support (0–1) from the best single source."""
    claims = claims_of(answer)
    if not claims:
        return []
    grounding = Grounding(sources, min_support=min_support)
    similarity = _similarity(claims, grounding.split, embed) if embed is not None and sources else None
    return [grounding.best(c, similarity[i] if similarity is not None else None) for i, c in enumerate(claims)]


def _similarity(claims: list[str], split: list[list[str]], embed: Callable[[list[str]], Any]) -> Any:
    """claims × sources: the cosine of each claim to the closest sentence of each source."""
    pieces = [s for parts in split for s in parts]
    owner = [j for j, parts in enumerate(split) for _ in parts]
    vectors = np.asarray(embed([*claims, *pieces]), dtype=np.float32)
    cosines = vectors[: len(claims)] @ vectors[len(claims) :].T
    best = np.full((len(claims), len(split)), -1.0, dtype=np.float32)
    for k, j in enumerate(owner):
        best[:, j] = np.maximum(best[:, j], cosines[:, k])
    return best


VERDICTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "claims": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"claim": {"type": "integer"}, "supported": {"type": "boolean"}},
                "required": ["claim", "supported"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["claims"],
    "additionalProperties": False,
}
JUDGE_SYSTEM = (
    "You check whether each numbered claim is supported by the numbered sources. A claim is supported "
    "only if a source states it (paraphrase is fine; a different number, name or condition is not). "
    'Reply with JSON only: {"claims": [{"claim": <number>, "supported": true|false}, ...]}, one entry per claim.'
)


async def judged(ctx: CheckContext, check: str, model: str | None) -> list[Claim]:
    claims = claims_of(ctx.output)
    if not claims or not ctx.sources:
        return assess(ctx.output, ctx.sources)
    judge = require_judge(ctx, check)
    listed_sources = "\n\n".join(f"[{i}] {s}" for i, s in enumerate(ctx.sources, 1))
    listed_claims = "\n".join(f"{i}. {c}" for i, c in enumerate(claims, 1))
    messages = [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": f"Sources:\n{listed_sources}\n\nClaims:\n{listed_claims}"},
    ]
    reply = read_reply(
        await judge(messages, schema=VERDICTS_SCHEMA, model=model, max_tokens=400), VERDICTS_SCHEMA, check
    )
    verdicts = {int(v["claim"]): bool(v["supported"]) for v in reply["claims"]}
    missing = [i for i in range(1, len(claims) + 1) if i not in verdicts]
    if missing:
        raise JudgeError(f"check '{check}': the judge gave no verdict for claim(s) {missing}")
    return [Claim(c, float(verdicts[i]), verdicts[i], "judge") for i, c in enumerate(claims, 1)]


def grounded(p: Params) -> Run:
    threshold = p.number("threshold", 0.8, 0, 1)
    min_support = p.number("min_support", 0.7, 0, 1)
    method = p.get("method", str, "overlap")
    if method not in ("overlap", "llm"):
        raise CheckError(f"check '{p.check}': 'method' is overlap or llm, not {method!r}")
    model = p.get("model", str, None)
    p.needs_llm = method == "llm"

    async def by_judge(ctx: CheckContext) -> Verdict:
        return verdict(await judged(ctx, p.check, model), threshold)

    def by_overlap(ctx: CheckContext) -> Verdict:
        return verdict(assess(ctx.output, ctx.sources, min_support=min_support, embed=ctx.embed), threshold)

    return by_judge if method == "llm" else by_overlap


def verdict(claims: Sequence[Claim], threshold: float) -> Verdict:
    if not claims:
        return Verdict(True, 1.0, "no factual claims to check")
    supported = sum(c.supported for c in claims)
    score = supported / len(claims)
    weakest = next((c for c in claims if not c.supported), None)
    detail = f"; unsupported: {weakest.text[:100]!r} ({weakest.why})" if weakest else ""
    return Verdict(score >= threshold, score, f"{supported}/{len(claims)} claims supported{detail}")
