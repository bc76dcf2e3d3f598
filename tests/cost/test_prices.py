from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from keel.cost import PriceTable
from keel.errors import ConfigError
from keel.types import Usage


def test_builtin_table_prices_input_cached_and_output() -> None:
    table = PriceTable.load()
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cached_input_tokens=400_000)
    # gpt-4o-mini: 600k × 0.15 + 400k × 0.075 + 1M × 0.60
    assert table.cost("gpt-4o-mini", usage) == pytest.approx(0.09 + 0.03 + 0.60)
    assert table.cost("no-such-model", usage) is None


def test_effective_dates_pick_the_price_in_force(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "version: t1\nmodels:\n  m:\n    - {effective: 2025-01-01, input: 1, output: 2}\n"
        "    - {effective: 2026-01-01, input: 10, output: 20}\n"
    )
    table = PriceTable.load(path)
    usage = Usage(input_tokens=1_000_000, output_tokens=0, cached_input_tokens=500_000)
    assert table.cost("m", usage, dt.date(2025, 6, 1)) == pytest.approx(1.0)  # no cached price: input price
    assert table.cost("m", usage, dt.date(2026, 6, 1)) == pytest.approx(10.0)
    assert table.cost("m", usage, dt.date(2024, 6, 1)) is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: x\nmodels:\n  m:\n    - {effective: 2025-01-01, input: -1, output: 2}\n", "prices.yaml:4"),
        ("version: x\nmodels:\n  m:\n    - {effective: someday, input: 1, output: 2}\n", "effective"),
        ("version: x\nmodels:\n  m:\n    - {effective: 2025-01-01, input: 1, output: 2, vat: 3}\n", "unknown key"),
        ("models: {}\n", "version"),
    ],
)
def test_bad_price_files_are_refused_with_file_and_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        PriceTable.load(path)
