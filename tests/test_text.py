"""Money is printed with enough significant digits to be read, the same everywhere."""

from __future__ import annotations

import pytest

from keel.text import content_words, numbers, usd


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        (0, "$0.00"),
        (2000, "$2,000.00"),
        (0.5, "$0.50"),
        (0.05, "$0.050"),
        (0.0001, "$0.00010"),
        (0.000015, "$0.000015"),
        (4.2e-7, "$0.00000042"),
        (1e-12, "$0.000000000"),
        (-0.003, "$-0.0030"),
    ],
)
def test_money_keeps_two_significant_digits(value: float | None, shown: str) -> None:
    assert usd(value) == shown


def test_numbers_read_number_words_as_digits() -> None:
    assert numbers(content_words("Card refunds take five to ten business days")) == {"5", "10"}
    assert numbers(content_words("1,000 requests, twenty seats, a dozen eggs")) == {"1000", "20", "12"}
    assert numbers(content_words("the one you chose")) == set()  # a pronoun as often as a number
