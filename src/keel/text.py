"""Text helpers every layer shares, each written once:

- token estimates, where a model's own tokenizer is not at hand (hosted models' tokenizers are not
  available offline): one rule for size guards, context fitting, chunking and budgets;
- content words, numbers and negations: what the grounded check, the citation check and the
  semantic cache's gate compare;
- citation markers ``[n]``: one pattern for the answer's citation list and the citation check."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import orjson

#: A citation marker in an answer: [1] … [999].
CITATION = re.compile(r"\[(\d{1,3})\]")
_UNCITE = re.compile(r"\s*\[\d{1,3}\]")
_WORD = re.compile(r"[a-z0-9]+(?:[.,:'/-][a-z0-9]+)*")
_DIGIT = re.compile(r"\d")
STOP = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers him his how i if in into is it its itself just let me more most my no nor not of off on
    once only or other our ours out over own same she should so some such than that the their theirs them
    then there these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yes please thanks hope helps""".split()
)
NEGATIONS = frozenset("not no never cannot can't won't don't doesn't isn't aren't wasn't weren't none nothing".split())

CHARS_PER_TOKEN = 4  # English prose averages ~4 characters a token on GPT-style tokenizers


def estimate_tokens(text: str) -> int:
    """The usual estimate of a text's tokens (≥ 1): what size checks and context fitting use."""
    return tokens_for_chars(len(text))


def tokens_for_chars(chars: int) -> int:
    """The same estimate from a character count alone (a stream's text, counted as it passed)."""
    return chars // CHARS_PER_TOKEN + 1


def upper_bound_tokens(messages: Sequence[Any]) -> int:
    """A deliberately high estimate of a request's input (3 characters a token, 12 characters per
    message for its role and framing): budget reservations over-count, never under-count."""
    chars = 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        chars += len(content) if isinstance(content, str) else len(orjson.dumps(content))
        chars += 12
    return math.ceil(chars / 3)


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    words = (w.strip(".,:'/-") for w in _WORD.findall(text.casefold().replace("’", "'")))
    return [_stem(w) for w in words if w and w not in STOP]


#: Numbers written as words, read as digits: "ten days" is not "five days", and "five" is "5".
#: ("one" is left out: it is a pronoun as often.)
NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        """_ _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen
        seventeen eighteen nineteen twenty""".split()
    )
    if word != "_"
} | {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
     "ninety": "90", "hundred": "100", "thousand": "1000", "million": "1000000", "dozen": "12"}  # fmt: skip


def numbers(words: Sequence[str]) -> set[str]:
    """The numbers among ``words``, as digits (commas dropped, number words read)."""
    return {NUMBER_WORDS.get(w) or w.replace(",", "") for w in words if w in NUMBER_WORDS or _DIGIT.search(w)}


def negated(text: str) -> bool:
    words = re.findall(r"[a-z']+", text.casefold().replace("’", "'"))
    return any(w in NEGATIONS or w.endswith("n't") for w in words)


def cited(text: str) -> list[int]:
    """The source numbers an answer cites, in order of first appearance."""
    seen: list[int] = []
    for match in CITATION.finditer(text):
        number = int(match.group(1))
        if number not in seen:
            seen.append(number)
    return seen


def uncited(text: str) -> str:
    """The text without its citation markers (and the space before each)."""
    return _UNCITE.sub("", text)


def usd(value: float | None) -> str:
    """Dollars as people read them: cents from ten cents up, and below at least two significant digits
    ($0.50, $0.050, $0.0012, $0.00000042), so a small budget never reads "$0.0000 of $0.00"."""
    if value is None:
        return "—"
    if value == 0:
        return "$0.00"
    size = abs(value)
    if size >= 0.1:
        return f"${value:,.2f}"
    places = min(9, max(2, -math.floor(math.log10(size)) + 1))
    return f"${value:.{places}f}"
