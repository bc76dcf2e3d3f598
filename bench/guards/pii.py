"""PII detection: recall and precision per type on a labelled set of snippets, and time per snippet.

    python bench/guards/pii.py           # ~20 s (the spaCy model loads once)

The set (built here, seeded, 360 snippets) plants values whose type is known — emails, phones in
several formats, cards with a valid Luhn digit, IBANs with valid check digits, SSNs, IPv4/IPv6, API
keys and tokens, names, street addresses — in support-style sentences, and mixes in look-alikes that
must not be flagged: cards failing Luhn, version numbers, order ids, timestamps, log lines, product
codes, capitalised product and plan names. Printed side by side: Keel's detector (checksummed
patterns + Presidio/spaCy for names, run only when a name could be there) and Presidio's analyzer
with its default recognizers on the same spaCy model. Targets: recall ≥ 0.95 for structured types,
≥ 0.85 for names; p50 ≤ 5 ms per snippet.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from keel.guards.pii import Finding, detect, luhn, names

console = Console(width=140)
FIRST = ["Maria", "James", "Aisha", "Wei", "Olga", "Carlos", "Fatima", "Liam", "Priya", "Kenji", "Sofia", "Noah",
         "Amara", "Lukas", "Elena", "Mateo", "Chloe", "Ivan", "Zara", "Omar"]  # fmt: skip
LAST = ["Gonzalez", "Smith", "Okafor", "Zhang", "Petrova", "Silva", "Haddad", "Murphy", "Patel", "Tanaka", "Rossi",
        "Johnson", "Mensah", "Becker", "Ivanova", "Fernandez", "Dubois", "Novak", "Khan", "Larsen"]  # fmt: skip
STREETS = ["Oak", "Maple", "Elm", "Cedar", "Harbor", "Hill", "Park", "Lake", "River", "Main"]
SUFFIXES = ["Street", "Avenue", "Road", "Lane", "Drive", "Boulevard"]
TEMPLATES = {
    "EMAIL": ["Please send the invoice to {v}.", "My login is {v} but reset fails.", "Contact {v} for billing."],
    "PHONE": ["Call me at {v} after 5pm.", "My number is {v}.", "You can reach our office on {v}."],
    "CARD": ["The card {v} was charged twice.", "Refund to card {v}, please.", "Payment with {v} failed."],
    "IBAN": ["Wire it to IBAN {v}.", "Our account is {v} at Commerzbank.", "Refund to {v} please."],
    "SSN": ["My SSN is {v} for the tax form.", "Tax id {v} is on file.", "Employee SSN: {v}."],
    "IP": ["Requests from {v} are blocked.", "Our server at {v} times out.", "Whitelist {v} please."],
    "SECRET": ["Our key {v} leaked in a commit.", "Use header Authorization: {v} when calling.", "Token: {v}"],
    "PERSON": ["Hi, this is {v} from accounting.", "Please add {v} to the team.", "Ask {v} about the refund."],
    "ADDRESS": ["Ship it to {v}, Springfield.", "Our office moved to {v}.", "Invoice address: {v}."],
}
NEGATIVES = [
    "Card 4111 1111 1111 1112 was rejected as invalid.", "We released version 2.3.1 yesterday.",
    "Order 1234567 shipped on 2026-11-30 at 10:42.", "2026-11-30 18:42:01 ERROR worker-3 job 8812 timed out after 30s",
    "SKU-4471-B and SKU-9002 are out of stock.", "The Team plan allows 25 members and 100 RPM.",
    "Upgrade to Business for SSO and audit logs.", "GET /v1/jobs?limit=100 returned 200 in 12 ms.",
    "Ticket #4412-8891 is escalated.", "Build 20261130.4 passed all checks.", "Set max_tokens to 4096 and retry.",
    "The Harbor CLI needs Python 3.11 or newer.", "Use port 8080 and timeout 30000 ms.",
    "Invoice INV-2026-000123 is overdue.", "Error code 0x80070005 means access denied.",
    "Range 1000-2000 is reserved.", "Release v10.2.3.4 fixes the retry bug.", "Sprint Review is on Friday.",
    "Priority Support answers within 1 business day.", "Rate limits reset every 60 seconds.",
]  # fmt: skip


@dataclass
class Snippet:
    text: str
    spans: list[tuple[str, int, int]] = field(default_factory=list)  # kind, start, end


def _card(rng: random.Random) -> str:
    digits = [4] + [rng.randint(0, 9) for _ in range(14)]
    for check in range(10):
        if luhn("".join(map(str, [*digits, check]))):
            number = "".join(map(str, [*digits, check]))
            return " ".join(number[i : i + 4] for i in range(0, 16, 4)) if rng.random() < 0.6 else number
    raise AssertionError


def _iban(rng: random.Random) -> str:
    bank = "".join(str(rng.randint(0, 9)) for _ in range(18))
    number = int("".join(str(int(c, 36)) for c in bank + "DE00"))
    check = 98 - number % 97
    iban = f"DE{check:02d}{bank}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def value(kind: str, rng: random.Random) -> str:
    if kind == "EMAIL":
        domain = rng.choice(["example.com", "mail.co.uk", "corp.io"])
        return f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}@{domain}"
    if kind == "PHONE":
        formats = ["+1 415-555-{:04d}", "(415) 555-{:04d}", "+44 20 7946 {:04d}", "+49 30 1234{:04d}", "415.555.{:04d}",
                   "+4915112{:04d}"]  # fmt: skip
        return rng.choice(formats).format(rng.randint(0, 9999))
    if kind == "CARD":
        return _card(rng)
    if kind == "IBAN":
        return _iban(rng)
    if kind == "SSN":
        return f"{rng.randint(100, 665):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    if kind == "IP":
        if rng.random() < 0.7:
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        return f"2001:db8:{rng.randint(1, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
    if kind == "SECRET":
        chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        body = "".join(rng.choice(chars) for _ in range(36))
        return rng.choice([f"sk-proj-{body}", f"ghp_{body}", f"AKIA{body[:16].upper()}", f"Bearer {body}xyz.abc"])
    if kind == "PERSON":
        return f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    return f"{rng.randint(1, 9999)} {rng.choice(STREETS)} {rng.choice(SUFFIXES)}"


def build(seed: int = 11) -> list[Snippet]:
    rng = random.Random(seed)
    out: list[Snippet] = []
    for kind, templates in TEMPLATES.items():
        for i in range(36):
            v = value(kind, rng)
            template = templates[i % len(templates)]
            text = template.format(v=v)
            start = text.index(v)
            out.append(Snippet(text, [(kind, start, start + len(v))]))
    for text in NEGATIVES:
        out.append(Snippet(text))
    rng.shuffle(out)
    return out


KIND_OF = {"PERSON": "PERSON", "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CARD",
           "IBAN_CODE": "IBAN", "US_SSN": "SSN", "IP_ADDRESS": "IP", "LOCATION": "ADDRESS"}  # fmt: skip


def score(snippets: list[Snippet], finder: object) -> tuple[dict[str, list[int]], list[float]]:
    """kind → [true positives, planted, found]; and milliseconds per snippet."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    times = []
    for s in snippets:
        t0 = time.perf_counter()
        found: list[Finding] = finder(s.text)  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
        for kind, start, end in s.spans:
            counts[kind][1] += 1
            if any(f.kind == kind and f.start < end and start < f.end for f in found):
                counts[kind][0] += 1
        for f in found:
            counts[f.kind][2] += 1
    return counts, times


def presidio_default() -> object:
    from presidio_analyzer import AnalyzerEngine

    ours = names().analyzer  # the same spaCy model, loaded from site-packages
    engine = AnalyzerEngine(nlp_engine=ours.nlp_engine, supported_languages=["en"])

    def find(text: str) -> list[Finding]:
        results = engine.analyze(text, language="en")
        return [Finding(KIND_OF.get(r.entity_type, r.entity_type), r.start, r.end, text[r.start : r.end])
                for r in results if r.score >= 0.5]  # fmt: skip

    return find


def main() -> None:
    snippets = build()
    planted = sum(len(s.spans) for s in snippets)
    console.print(f"{len(snippets)} snippets: {planted} planted values, {len(NEGATIVES)} look-alike negatives")
    detect("warm up Maria Gonzalez")
    ours, our_times = score(snippets, detect)
    theirs, their_times = score(snippets, presidio_default())
    table = Table("type", "Keel recall", "Keel precision", "Presidio defaults recall", "Presidio precision",
                  title="PII detection per type")  # fmt: skip
    for kind in [*TEMPLATES, *sorted(set(theirs) - set(TEMPLATES))]:
        tp, n, found = ours.get(kind, [0, 0, 0])
        ttp, tn_, tfound = theirs.get(kind, [0, 0, 0])
        table.add_row(
            kind,
            f"{tp / n:.3f}" if n else "—", f"{tp / found:.3f}" if found else "—",
            f"{ttp / tn_:.3f}" if tn_ else "—", f"{ttp / tfound:.3f}" if tfound else "—",
        )  # fmt: skip
    console.print(table)
    negatives = [s for s in snippets if not s.spans]
    fp_ours = sum(bool(detect(s.text)) for s in negatives)
    fp_theirs = sum(bool(presidio_default()(s.text)) for s in negatives)  # type: ignore[operator]
    console.print(
        f"look-alike negatives flagged: Keel {fp_ours}/{len(negatives)}, Presidio defaults {fp_theirs}/{len(negatives)}"
    )
    for label, times in (("Keel", our_times), ("Presidio defaults", their_times)):
        times = sorted(times)
        console.print(f"{label}: p50 {statistics.median(times):.2f} ms, p90 {times[int(len(times) * 0.9)]:.2f} ms, "
                      f"p99 {times[int(len(times) * 0.99)]:.2f} ms per snippet")  # fmt: skip


# Ordinary support questions that hold no personal data, made from slots that tempt a name finder:
# capitalised UI and product nouns, brands, countries and cities, languages, weekdays and months.
PLACES = [
    "Germany",
    "France",
    "Brazil",
    "Canada",
    "Japan",
    "India",
    "Australia",
    "Mexico",
    "Spain",
    "Italy",
    "the UK",
    "the EU",
    "California",
    "Texas",
    "Berlin",
    "Paris",
    "Toronto",
    "Singapore",
    "São Paulo",
    "New York",
]
UI = [
    "Email",
    "Settings",
    "Billing",
    "Dashboard",
    "Invoices",
    "Two-Factor Authentication",
    "Admin Console",
    "Reports",
    "Workspace",
    "Team",
    "Notifications",
    "Profile",
    "Security",
    "Integrations",
    "API Keys",
]
BRANDS = [
    "PayPal",
    "Apple Pay",
    "Google Pay",
    "Stripe",
    "Slack",
    "Zapier",
    "Okta",
    "Outlook",
    "Gmail",
    "Salesforce",
    "Shopify",
    "Excel",
    "Chrome",
    "Safari",
    "Firefox",
    "iPhone",
    "Android",
    "Windows",
    "macOS",
    "Teams",
]
PLANS = ["Free plan", "Pro plan", "Team plan", "Enterprise plan", "Business tier"]
LANGS = ["French", "German", "Spanish", "Japanese", "Portuguese", "Italian"]
WHEN = ["Monday", "Friday", "Sunday", "December", "March", "Black Friday", "Christmas", "Easter"]
QUESTIONS = [
    "Do you ship to {place}?", "How do I change my billing country to {place}?",
    "What is the VAT rate for customers in {place} on the {plan}?", "Is the {brand} integration available in {place}?",
    "Can I pay with {brand} on the {plan}?", "Where do I find {ui} in the app?",
    "Why does the {ui} page say my card is invalid?", "Is there a {lang} version of the {ui} page?",
    "My {ui} stopped syncing with {brand} on {when}. What should I check?",
    "Does the {plan} include {ui}?", "Can I move my workspace to the {place} data region?",
    "How long does delivery to {place} take around {when}?", "Is support open on {when} for customers in {place}?",
    "Do invoices show the tax number for {place}?", "Why was my {brand} payment declined in {when}?",
    "How do I turn on {ui} for my whole Team?", "Can I export {ui} to {brand}?",
    "Does the {brand} app support {lang}?", "Is the {plan} cheaper if we pay yearly from {place}?",
    "Can my team in {place} and {place2} share one {plan}?",
]  # fmt: skip


def support_questions(n: int = 200, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        q = rng.choice(QUESTIONS).format(place=rng.choice(PLACES), place2=rng.choice(PLACES), ui=rng.choice(UI),
                                         brand=rng.choice(BRANDS), plan=rng.choice(PLANS), lang=rng.choice(LANGS),
                                         when=rng.choice(WHEN))  # fmt: skip
        if q not in out:
            out.append(q)
    return out


def no_pii_questions() -> None:
    """What redaction does to questions with no personal data: on the feature's defaults (places
    kept), everything redacted is a false positive that changes the question."""
    from keel.guards.output import KEEP
    from keel.guards.pii import redact

    questions = support_questions()
    table = Table("setting", "questions changed", "findings by kind", title=f"{len(questions)} support questions "
                  "without personal data")  # fmt: skip
    examples: list[str] = []
    for label, keep in (("default (places kept)", frozenset(KEEP)), ("keep: [] (redact places too)", frozenset())):
        changed, kinds = 0, defaultdict(int)
        for q in questions:
            red = redact(q, keep=keep)
            if red.findings:
                changed += 1
                for f in red.findings:
                    kinds[f.kind] += 1
                if keep and len(examples) < 5:
                    examples.append(f"{q!r} → {red.text!r}")
        table.add_row(label, f"{changed}/{len(questions)}", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    console.print(table)
    for line in examples:
        console.print(f"  changed: {line}", highlight=False)


def input_guards_overhead() -> None:
    """All default input guards on a typical request: the injection screen and PII redaction."""
    from keel.guards.pii import redact
    from keel.guards.screen import screen

    requests = {
        "no personal data": "How long do card refunds take on the annual plan, and can I get one after 30 days?",
        "with a name, card, email": "Hi, I'm Maria Gonzalez: card 4111 1111 1111 1111 was charged twice, please "
        "refund and confirm to maria.g@example.com.",
    }
    for label, text in requests.items():
        screen(text), redact(text)
        times = []
        for _ in range(300):
            t0 = time.perf_counter()
            screen(text)
            redact(text)
            times.append((time.perf_counter() - t0) * 1000)
        console.print(f"default input guards on a typical request ({label}): p50 {statistics.median(times):.2f} ms")


if __name__ == "__main__":
    main()
    no_pii_questions()
    input_guards_overhead()
