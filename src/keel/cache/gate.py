"""The semantic cache's gate: embeddings say two questions are *about* the same thing; this says
whether they *ask* the same thing. "Turn on the lights" and "turn off the lights" score 0.9 on any
bi-encoder; so do "the Team plan" and "the Business plan", "30 days" and "60 days".

A near-hit is refused when the two texts
- differ in their numbers (30 vs 60, 256 KB vs 512 KB);
- differ in negation (one says not/never/can't/without…, the other does not);
- contain opposite actions (on/off, enable/disable, add/remove, import/export, …);
- keep the same frame with a word or two replaced in place ("the API rate limit on the *Team* /
  *Business* plan"): aligned word by word, the only differences are substitutions and at least half
  the content words match. That is a changed slot — an entity, a plan, a field — not a paraphrase:
  paraphrases reorder, add or drop words. (Synonyms swapped in place are refused too: a miss costs a
  model call; a wrong hit serves a wrong answer.)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from keel.text import content_words, negated, numbers

OPPOSITES = [
    ("on", "off"), ("enable", "disable"), ("activate", "deactivate"), ("add", "remove"), ("add", "delete"),
    ("import", "export"), ("install", "uninstall"), ("increase", "decrease"), ("raise", "lower"),
    ("maximum", "minimum"), ("max", "min"), ("largest", "smallest"), ("longest", "shortest"),
    ("open", "close"), ("start", "stop"), ("pause", "resume"), ("create", "delete"), ("upgrade", "downgrade"),
    ("renew", "cancel"), ("allow", "block"), ("before", "after"), ("within", "after"), ("in", "out"),
    ("rest", "transit"), ("upload", "download"), ("encrypt", "decrypt"), ("lock", "unlock"), ("show", "hide"),
    ("more", "less"), ("first", "last"), ("success", "fail"), ("successful", "failed"), ("under", "over"),
    ("restore", "delete"), ("invite", "remove"), ("subscribe", "unsubscribe"), ("accept", "reject"),
]  # fmt: skip
_OPPOSITE = {a: b for a, b in OPPOSITES} | {b: a for a, b in OPPOSITES}
SAME_FRAME = 0.5  # share of aligned content words above which in-place substitutions are a changed slot


@dataclass(frozen=True, slots=True)
class GateVerdict:
    same: bool
    reason: str


def _words(text: str) -> set[str]:
    return {w for w in (t.strip("?.!,;:'\"()") for t in text.casefold().replace("’", "'").split()) if w}


def compare(query: str, cached: str) -> GateVerdict:
    a_words, b_words = content_words(query), content_words(cached)
    a_numbers, b_numbers = numbers(a_words), numbers(b_words)
    if a_numbers != b_numbers:
        return GateVerdict(False, f"numbers differ: {sorted(a_numbers)} vs {sorted(b_numbers)}")
    if negated(query) != negated(cached):
        return GateVerdict(False, "one is negated, the other is not")
    raw_a, raw_b = _words(query), _words(cached)
    for word in raw_a:
        other = _OPPOSITE.get(word)
        if other is not None and other in raw_b and other not in raw_a and word not in raw_b:
            return GateVerdict(False, f"opposites: '{word}' vs '{other}'")
    swapped = slot_swap(a_words, b_words)
    if swapped:
        return GateVerdict(False, f"same frame, different slot: {swapped}")
    return GateVerdict(True, "same numbers, polarity and slots")


def slot_swap(a: list[str], b: list[str]) -> str | None:
    """'x → y' when ``b`` is ``a`` with words substituted in place (and nothing added or dropped)."""
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    kinds = {op[0] for op in ops}
    if "replace" not in kinds or not kinds <= {"equal", "replace"}:
        return None
    aligned = sum(i2 - i1 for tag, i1, i2, _, _ in ops if tag == "equal")
    if aligned / max(len(a), len(b)) < SAME_FRAME:
        return None
    return ", ".join(f"{' '.join(a[i1:i2])} → {' '.join(b[j1:j2])}" for tag, i1, i2, j1, j2 in ops if tag == "replace")
