"""PII and secrets: checksummed patterns, names by Presidio on the PyPI spaCy model, reversible
redaction in a request, and canaries that must never reach a trace or the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keel.guards.pii import detect, iban_ok, luhn, redact, redact_value, restore


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Mail maria.g@example.com today", "EMAIL", "maria.g@example.com"),
        ("Card 4111 1111 1111 1111 was charged", "CARD", "4111 1111 1111 1111"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN", "DE89 3704 0044 0532 0130 00"),
        ("SSN 123-45-6789 on file", "SSN", "123-45-6789"),
        ("Call me at +1 415-555-0132.", "PHONE", "+1 415-555-0132"),
        ("My number is 415.555.0132.", "PHONE", "415.555.0132"),
        ("Blocked 203.0.113.9 and 2001:db8:ec55::9c64", "IP", "2001:db8:ec55::9c64"),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz123456 leaked", "SECRET", "sk-proj-abcdefghijklmnopqrstuvwxyz123456"),
        (
            "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789",
            "SECRET",
            "Bearer abcdefghijklmnopqrstuvwxyz0123456789",
        ),
        ("Ship to 742 Evergreen Terrace, Springfield", "ADDRESS", "742 Evergreen Terrace"),
        ("Please add Maria Gonzalez to the team.", "PERSON", "Maria Gonzalez"),
    ],
)
def test_each_kind_is_found(text: str, kind: str, value: str) -> None:
    assert (kind, value) in [(f.kind, f.text) for f in detect(text)]


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111 1111 1111 1112 was rejected as invalid.",  # fails Luhn
        "We released version 2.3.1 yesterday; build 4111-1111 failed.",
        "2026-11-30 18:42:01 ERROR worker-3 job 8812 timed out after 30s",
        "SKU-4471-B and SKU-9002 are out of stock.",
        "Release v10.2.3.4 fixes the retry bug.",
        "The Team plan allows 25 members; Business adds SSO.",
        "Order 1234567 shipped.",
        "",
    ],
)
def test_look_alikes_are_not_pii(text: str) -> None:
    assert detect(text) == []


def test_checksums() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE88 3704 0044 0532 0130 00")


def test_pii_split_across_lines_and_unicode() -> None:
    text = "Name: Maria\nGonzalez, card\n4111 1111 1111 1111 — e-mail: josé.núñez@example.com"
    kinds = {f.kind for f in detect(text)}
    assert {"CARD"} <= kinds  # the card survives a line break before it


def test_redaction_is_reversible_in_a_request_and_irreversible_in_traces() -> None:
    text = "I'm Maria Gonzalez (maria.g@example.com); email maria.g@example.com again, card 4111 1111 1111 1111."
    red = redact(text)
    assert "maria.g@example.com" not in red.text and red.text.count("<EMAIL_1>") == 2  # same value, same placeholder
    assert "<PERSON_1>" in red.text and "<CARD_1>" in red.text
    assert restore(red.text, red.mapping) == text
    assert redact_value({"q": text}) == {"q": "I'm Maria Gonzalez ([EMAIL]); email [EMAIL] again, card [CARD]."}
    kept = redact(text, keep=frozenset({"EMAIL"}))
    assert "maria.g@example.com" in kept.text and "<CARD_1>" in kept.text


def test_a_100_kb_input_is_handled() -> None:
    import time

    text = ("Routine log line number 42 with nothing personal in it. " * 1800) + "Contact: ada@example.com"
    started = time.perf_counter()
    found = detect(text)
    assert [f.kind for f in found] == ["EMAIL"] and time.perf_counter() - started < 2


async def test_canaries_never_reach_the_model_or_the_trace(pipeline: Any, project: Path) -> None:
    pipe, provider, _ = pipeline
    (project / "features" / "support.yaml").write_text("prompt: support\nmodel: m\nguards: {input: [pii_redact]}\n")
    canary_card, canary_email = "4000 0566 5566 5556", "canary.7f3a@example.com"
    question = f"Why was card {canary_card} charged twice? Reply to {canary_email}."
    provider.responder = None  # echo: the answer repeats what the model was sent
    result = await pipe.run("support", {"question": question}, user="u1")
    sent = " ".join(str(m.get("content")) for call in provider.calls for m in call.messages)
    assert canary_card not in sent and canary_email not in sent and "<CARD_1>" in sent
    assert canary_card in result.answer  # restored for the user
    assert any("guard pii_redact: CARD, EMAIL replaced" in n for n in result.notes)
    assert pipe.service.writer.flush(5.0)
    rows = pipe.store.db.conn.execute("SELECT request, response FROM traces").fetchall()
    dump = " ".join(str(r[0]) + str(r[1]) for r in rows)
    assert canary_card not in dump and canary_email not in dump and "4000" not in dump


def test_product_nouns_capitalised_mid_sentence_are_not_names() -> None:
    from keel.guards.pii import detect

    found = [(f.kind, f.text) for f in detect("My name is John Smith and my Email changed.")]
    assert ("PERSON", "John Smith") in found and ("PERSON", "Email") not in found
