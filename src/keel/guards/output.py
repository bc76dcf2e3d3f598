"""Output guards: what the model said, checked before the user sees it. Each gives a score (0–1)
and a reason; together they make the answer's **confidence** (the lowest score), which the "I don't
know" path and review use.

- ``grounded``: each claim supported by the sources it was given (the ``grounded`` check: words,
  paraphrase by embedding, numbers, negations).
- ``citations``: every [n] names a source that was given, and the sentence citing it shares words
  with that source.
- ``unsafe``: a documented policy — instructions for weapons, self-harm encouragement, hate slurs,
  sexual content involving minors, credentials or secrets echoed back — by phrase lists and the secret
  patterns of the PII guard; a hit scores 0.
- ``schema``: a structured answer that is not valid against its schema (its fallback served) scores 0.

Actions: ``flag`` (the default: keep the answer, lower the confidence, note it), ``block`` (refuse
with the reason), ``fallback`` (serve the declared fallback answer instead).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from keel.checks.grounded import assess, content_words
from keel.checks.grounded import verdict as grounded_verdict
from keel.guards.pii import detect

_CITE = re.compile(r"\[(\d{1,3})\]")

UNSAFE: dict[str, tuple[str, ...]] = {
    "weapons": ("build a bomb", "make a bomb", "pipe bomb", "make explosives", "synthesize nerve agent",
                "3d-print a gun"),
    "self-harm": ("kill yourself", "you should die", "ways to end your life", "how to self-harm"),
    "hate": ("subhuman", "ethnic cleansing is", "gas the"),
    "sexual-minors": ("sexual content involving minors", "child sexual"),
    "malware": ("write ransomware", "keylogger that evades", "disable the antivirus and"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class GuardResult:
    name: str
    score: float
    passed: bool
    reason: str


def grounded(
    answer: str, sources: Sequence[str], embed: Callable[[list[str]], Any] | None, threshold: float
) -> GuardResult:
    claims = assess(answer, sources, embed=embed)
    v = grounded_verdict(claims, threshold)
    return GuardResult("grounded", v.score, v.passed, v.reason)


def citations(answer: str, sources: Sequence[str]) -> GuardResult:
    parts = [p for p in re.split(r"(?<=[.!?])\s+|\n+", answer) if p.strip()]
    cited = [(s, [int(n) for n in _CITE.findall(s)]) for s in parts]
    numbers = [n for _, ns in cited for n in ns]
    if not numbers:
        return GuardResult("citations", 1.0 if not sources else 0.5, True, "no citations")
    bad: list[str] = []
    good = 0
    for sentence, ns in cited:
        words = set(content_words(_CITE.sub("", sentence)))
        for n in ns:
            if not 1 <= n <= len(sources):
                bad.append(f"[{n}] names no source")
            elif words and not words & set(content_words(sources[n - 1])):
                bad.append(f"[{n}] shares no words with its sentence")
            else:
                good += 1
    score = good / len(numbers)
    return GuardResult("citations", score, not bad, "; ".join(bad[:3]) or f"{good} citation(s) check out")


def unsafe(answer: str) -> GuardResult:
    low = answer.casefold()
    for category, phrases in UNSAFE.items():
        hit = next((p for p in phrases if p in low), None)
        if hit is not None:
            return GuardResult("unsafe", 0.0, False, f"{category}: {hit!r}")
    secrets = [f for f in detect(answer, ner=False) if f.kind == "SECRET"]
    if secrets:
        return GuardResult("unsafe", 0.0, False, f"echoes a secret ({secrets[0].text[:12]}…)")
    return GuardResult("unsafe", 1.0, True, "no unsafe category matched")


def schema(valid: bool) -> GuardResult:
    return GuardResult("schema", 1.0 if valid else 0.0, valid, "valid" if valid else "no attempt was valid")
