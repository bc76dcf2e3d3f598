"""Output guards: what the model said, checked before the user sees it. Each guard is a check from
the one registry (``keel.checks``), so a guard and an eval that share a name are the same code:

- ``grounded``: each claim supported by the sources it was given (words, paraphrase by embedding,
  numbers, negations);
- ``citations``: every [n] names a source that was given, and the sentence citing it shares words
  with that source (not required: an answer without any scores 0.5 when it had sources);
- ``unsafe`` (defined here, registered through the ``keel.checks`` entry point like any plugin): a
  documented policy — instructions for weapons, self-harm encouragement, hate slurs, sexual content
  involving minors, malware, credentials or secrets echoed back — by phrase lists and the secret
  patterns of the PII guard; a hit scores 0;
- ``schema``: a structured answer none of whose attempts validated (its fallback served) scores 0;
- ``pii`` (registered here too): the answer carries personal data or a secret — an email, phone,
  card, IBAN, SSN, IP, street address, a person's name or any secret shape — found by the same
  detectors as the input guard; with ``action: redact`` each is replaced by its kind (``[EMAIL]``)
  before the user sees it. Places alone are kept (``keep``, like ``pii_redact``), and so is a value
  the sources contain (the docs' own support@ address).

Their verdicts' scores make the answer's **confidence** (the lowest), which the "I don't know" path
and review use. Actions: ``flag`` (the default: keep the answer, lower the confidence, note it),
``block`` (refuse with the reason), ``fallback`` (serve the declared fallback answer instead),
``redact`` (``pii`` only: hide what it found, keep the rest).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from keel.checks.base import CheckContext, Verdict
from keel.checks.builtin import Params, Run
from keel.checks.registry import BoundCheck, make_check
from keel.guards.pii import Finding, detect

UNSAFE: dict[str, tuple[str, ...]] = {
    "weapons": ("build a bomb", "make a bomb", "pipe bomb", "make explosives", "synthesize nerve agent",
                "3d-print a gun"),
    "self-harm": ("kill yourself", "you should die", "ways to end your life", "how to self-harm"),
    "hate": ("subhuman", "ethnic cleansing is", "gas the"),
    "sexual-minors": ("sexual content involving minors", "child sexual"),
    "malware": ("write ransomware", "keylogger that evades", "disable the antivirus and"),
}  # fmt: skip
GROUNDED_THRESHOLD = 0.8


def unsafe(p: Params) -> Run:
    def run(ctx: CheckContext) -> Verdict:
        low = ctx.output.casefold()
        for category, phrases in UNSAFE.items():
            hit = next((phrase for phrase in phrases if phrase in low), None)
            if hit is not None:
                return Verdict(False, 0.0, f"{category}: {hit!r}")
        secrets = [f for f in detect(ctx.output, ner=False) if f.kind == "SECRET"]
        if secrets:
            return Verdict(False, 0.0, f"echoes a secret ({secrets[0].text[:12]}…)")
        return Verdict(True, 1.0, "no unsafe category matched")

    return run


#: Kinds the ``pii`` guards leave alone unless told otherwise: a country or a city on its own is not
#: personal data ("do you ship to Germany?"), and a street address is found as ADDRESS.
KEEP = ("LOCATION",)


def _found(answer: str, keep: frozenset[str], sources: Sequence[str] = ()) -> list[Finding]:
    """Personal data in the answer that is not of a kept kind and not quoted from a source: a docs
    bot that gives out support@… or names the product's SDKs is not leaking anything."""
    return [f for f in detect(answer) if f.kind not in keep and not any(f.text in s for s in sources)]


def pii(p: Params) -> Run:
    """The answer carries personal data or a secret, found by the input guard's detectors (patterns
    with checksums, secret shapes, names by Presidio on spaCy); ``keep`` lists kinds to let through.
    Values the sources themselves contain are the documents' own and pass."""
    keep = frozenset(p.get("keep", list, list(KEEP)))

    def run(ctx: CheckContext) -> Verdict:
        kinds = sorted({f.kind for f in _found(ctx.output, keep, ctx.sources)})
        if kinds:
            return Verdict(False, 0.0, f"the answer carries {', '.join(kinds)}")
        return Verdict(True, 1.0, "no personal data or secret in the answer")

    return run


def redact_answer(answer: str, keep: frozenset[str] = frozenset(KEEP), sources: Sequence[str] = ()) -> str:
    """The answer with each personal datum or secret the ``pii`` guard finds replaced by its kind."""
    for f in sorted(_found(answer, keep, sources), key=lambda f: -f.start):
        answer = f"{answer[: f.start]}[{f.kind}]{answer[f.end :]}"
    return answer


def register(add: Callable[..., None]) -> None:
    """The ``keel.checks`` entry point: the guards' own checks, through the plugin door."""
    add("unsafe", unsafe)
    add("pii", pii)


@functools.lru_cache(maxsize=64)
def guard_check(name: str, threshold: float | None, keep: tuple[str, ...] = KEEP) -> BoundCheck:
    """The registry's check for an output-guard rule, with the guard's defaults: built once per rule
    (a bound check is immutable), not on every feature run."""
    spec: dict[str, Any] = {"type": name}
    if name == "grounded":
        spec["threshold"] = threshold or GROUNDED_THRESHOLD
    elif name == "citations":
        spec["required"] = False
    elif name == "pii":
        spec["keep"] = list(keep)
    return make_check(spec)
