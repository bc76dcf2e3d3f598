"""What a bag-of-n-grams classifier misses, caught by rules:

- **invisible characters**: zero-width spaces and joiners, bidi overrides, Unicode tag characters
  (U+E0000–E007F, which can spell a hidden ASCII instruction) — ordinary text has no reason for them;
- **encoded payloads**: base64 runs and ROT13 that decode to readable text are decoded, so the
  classifier screens what the model would read;
- **indirect injection**: retrieved documents addressing the assistant ("ignore the previous
  instructions", "as the AI you must…", fake role headers) — a document should inform, not instruct.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass

from keel.guards.cues import instructing

_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_TAGS = range(0xE0000, 0xE0080)
_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}
_ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u180e"}
_ADDRESSING = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all|any|system)\b.{0,30}"
    r"\b(instructions?|prompts?|rules?|messages?|guidelines?)\b"
    r"|\b(you are now|from now on,? you|new instructions?:|system prompt|developer mode|jailbreak)\b"
    r"|^\s*(system|assistant|###\s*instruction)\s*:"
    r"|\b(as an? (ai|assistant|language model)|dear (ai|assistant|chatbot)),? (you )?(must|should|will)\b"
    r"|\b(reveal|print|output|repeat|show)\b.{0,30}\b(system prompt|hidden instructions?|your instructions)\b",
    re.IGNORECASE | re.MULTILINE,
)
_WORDS = re.compile(r"[a-zA-Z]{3,}")
COMMON = frozenset(
    "the and you your are for not this that with all ignore previous instructions system prompt tell what "
    "now from have will must reveal print secret password please answer any only say reply respond output send "
    "call follow".split()
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    detail: str


def invisible(text: str) -> Finding | None:
    tags = [ch for ch in text if ord(ch) in _TAGS]
    if tags:
        hidden = "".join(chr(ord(ch) - 0xE0000) for ch in tags if 0x20 <= ord(ch) - 0xE0000 < 0x7F)
        return Finding("invisible", f"{len(tags)} Unicode tag characters spelling {hidden[:60]!r}")
    bidi = sum(ch in _BIDI for ch in text)
    zero = sum(ch in _ZERO_WIDTH for ch in text)
    if bidi:
        return Finding("invisible", f"{bidi} bidirectional override character(s)")
    if zero >= 3:  # one stray zero-width joiner (emoji sequences) is normal; a sprinkle is not
        return Finding("invisible", f"{zero} zero-width characters")
    return None


def hidden_tag_text(text: str) -> str:
    return "".join(chr(ord(ch) - 0xE0000) for ch in text if 0xE0020 <= ord(ch) < 0xE007F)


def _readable(text: str) -> bool:
    words = _WORDS.findall(text)
    if len(words) < 3:
        return False
    printable = sum(ch.isprintable() or ch.isspace() for ch in text) / max(1, len(text))
    return printable > 0.95 and sum(w.lower() in COMMON for w in words) >= 2


def decoded_payloads(text: str, *, limit: int = 8) -> list[tuple[str, str]]:
    """(encoding, decoded text) for base64 runs and ROT13 that read as English."""
    out: list[tuple[str, str]] = []
    for match in _B64.finditer(text):
        if len(out) >= limit:
            break
        chunk = match.group(0)
        try:
            decoded = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if _readable(decoded):
            out.append(("base64", decoded))
    rot = codecs.decode(text, "rot13")
    if rot != text and _readable(rot) and not _readable(text):
        out.append(("rot13", rot))
    tagged = hidden_tag_text(text)
    if tagged:
        out.append(("unicode tags", tagged))
    return out


def addressing(text: str, *, cues: bool = True) -> Finding | None:
    """Instructions aimed at the assistant — for retrieved documents, where nothing should be: the
    English patterns above, then (``cues``) the cue rule in six languages (``cues.instructing``)."""
    match = _ADDRESSING.search(unicodedata.normalize("NFKC", text))
    if match:
        return Finding("indirect", f"addresses the assistant: {match.group(0).strip()[:80]!r}")
    sentence = instructing(text) if cues else None
    return Finding("indirect", f"instructs the model: {sentence[:80]!r}") if sentence else None
