"""A versioned price table (YAML): per model and usage type, with effective dates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keel.config.yamlfile import LocatedYAML, parse_yaml, read_yaml
from keel.errors import ConfigError
from keel.types import Usage

PER = 1_000_000


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    effective: dt.date
    input: float = Field(ge=0, description="USD per 1M input tokens")
    cached_input: float | None = Field(None, ge=0, description="USD per 1M cached input tokens")
    output: float = Field(ge=0, description="USD per 1M output tokens")


class PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    models: dict[str, list[Price]]


class PriceTable:
    def __init__(self, table: PriceFile) -> None:
        self.version = table.version
        self.models = {name: sorted(prices, key=lambda p: p.effective) for name, prices in table.models.items()}

    @classmethod
    def from_yaml(cls, doc: LocatedYAML) -> PriceTable:
        try:
            return cls(PriceFile.model_validate(doc.data or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            raise ConfigError(f"{doc.where(loc)}: {'.'.join(map(str, loc))}: {msg}") from None

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        if path is not None:
            return cls.from_yaml(read_yaml(path))
        text = files("keel.cost").joinpath("default_prices.yaml").read_text(encoding="utf-8")
        return cls.from_yaml(parse_yaml(text, "keel/cost/default_prices.yaml"))

    def price(self, model: str, at: dt.date) -> Price | None:
        found = None
        for price in self.models.get(model, []):
            if price.effective <= at:
                found = price
        return found

    def cost(self, model: str, usage: Usage, at: dt.date | None = None) -> float | None:
        """USD for ``usage`` at the price in effect on ``at`` (today by default); None if unpriced."""
        price = self.price(model, at or dt.date.today())
        if price is None:
            return None
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_rate = price.cached_input if price.cached_input is not None else price.input
        return (
            (usage.input_tokens - cached) * price.input + cached * cached_rate + usage.output_tokens * price.output
        ) / PER


def total_cost(costs: Iterable[float | None]) -> float | None:
    """The sum of several calls' costs; None when any of them is unpriced (never a silent zero)."""
    listed = list(costs)
    if any(c is None for c in listed):
        return None
    return float(sum(c for c in listed if c is not None))
