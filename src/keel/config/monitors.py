"""What a monitor compares and when it alerts, shared by a feature's ``monitors:`` (keel.features)
and keel.yaml's ``monitors:`` for raw gateway traffic: the window, the reference (a span before
it, a labelled eval run, or pinned dates) and the alert."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from keel.config.base import Strict
from keel.errors import UserError
from keel.timespan import parse_span

SWEEP_S = 300.0  # how often windows are compared (keel.monitor's sweeper)


@dataclass(frozen=True, slots=True)
class Reference:
    kind: Literal["span", "eval-run", "pinned"]
    seconds: float = 0.0  # span: how far back before the window
    label: str = ""  # eval-run: the run's label or id
    start: float = 0.0  # pinned: [start, end)
    end: float = 0.0

    def describe(self) -> str:
        if self.kind == "span":
            return f"the {_span(self.seconds)} before the window"
        if self.kind == "eval-run":
            return f"eval run '{self.label}'"
        days = (dt.datetime.fromtimestamp(t, dt.UTC).date().isoformat() for t in (self.start, self.end - 86_400))
        return "pinned " + "..".join(days)


def _span(seconds: float) -> str:
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def parse_reference(value: str) -> Reference:
    """``7d`` (the span before the window), ``eval-run:LABEL`` or ``pinned:YYYY-MM-DD..YYYY-MM-DD``."""
    text = value.strip()
    if text.startswith("eval-run:"):
        label = text.removeprefix("eval-run:").strip()
        if not label:
            raise ValueError("eval-run: names a labelled eval run or its id, e.g. eval-run:main")
        return Reference("eval-run", label=label)
    if text.startswith("pinned:"):
        first, sep, last = text.removeprefix("pinned:").partition("..")
        try:
            start = dt.date.fromisoformat(first.strip())
            end = dt.date.fromisoformat(last.strip()) if sep else start
        except ValueError:
            raise ValueError(f"pinned: takes two dates, pinned:2026-11-20..2026-11-27, not '{text}'") from None
        if end < start:
            raise ValueError(f"pinned: the end {end} is before the start {start}")
        begin = dt.datetime.combine(start, dt.time(), dt.UTC).timestamp()
        return Reference("pinned", start=begin, end=dt.datetime.combine(end, dt.time(), dt.UTC).timestamp() + 86_400)
    try:
        return Reference("span", seconds=parse_span(text, "reference"))
    except UserError as exc:
        raise ValueError(f"{exc.message}, or eval-run:LABEL, or pinned:2026-11-20..2026-11-27") from None


class AlertSettings(Strict):
    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        """YAML 1.1 reads a bare ``on:`` key as the boolean true; it means ``on`` here."""
        if isinstance(data, dict) and True in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    webhook: str | None = Field(None, pattern=r"^https?://", description="signed like every Keel webhook")
    min_samples: int = Field(200, ge=10, le=10_000_000, description="fewer observations in the window: no verdict")
    on: list[Literal["drop", "drift"]] = Field(
        default_factory=lambda: ["drop", "drift"],  # type: ignore[arg-type]
        description="drop: a quality signal got worse; drift: inputs or outputs changed distribution",
    )
    fdr: float = Field(
        0.001,
        gt=0,
        lt=0.5,
        description="Benjamini–Hochberg false discovery rate per comparison; a window is compared every "
        "5 minutes, so it is small",
    )


class Watch(Strict):
    """What every monitor has: the window compared, the reference it is compared with, the alert."""

    window: str = "1d"
    reference: str = "7d"
    alert: AlertSettings = AlertSettings()

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        try:
            parse_span(value, "window")
        except UserError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: str) -> str:
        parse_reference(value)
        return value

    @property
    def window_s(self) -> float:
        return parse_span(self.window, "window")

    @property
    def ref(self) -> Reference:
        return parse_reference(self.reference)


class GatewayMonitor(Watch):
    """A monitor of raw gateway traffic (``/v1/chat/completions`` calls that are not part of a
    feature run): the judge-free signals — errors, latency, cost, answer length, refusals — of the
    calls to ``models`` (aliases; default every alias), compared like a feature's."""

    models: list[str] | None = Field(None, description="the model aliases whose calls it watches (default: all)")

    @field_validator("reference")
    @classmethod
    def _no_eval_run(cls, value: str) -> str:
        if parse_reference(value).kind == "eval-run":
            raise ValueError("raw gateway traffic has no eval runs: use a span (7d) or pinned:START..END")
        return value
