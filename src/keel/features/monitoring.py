"""A feature's ``monitors:``: which live runs are scored by which checks, against what reference,
and when to say something moved (keel.monitor does the work, off the request path).

    monitors:
      quality:
        sample: 0.1                 # share of live runs the checks score (judge-free signals cover all)
        checks: [grounded, citations-valid, not-refusal, {type: llm-rubric, rubric: "...", runs: 1}]
        budget_usd_day: 2           # judges stop, and say so, when spent
        window: 1d
        reference: 7d               # or eval-run:main, or pinned:2026-11-20..2026-11-27
        alert: {webhook: https://…, min_samples: 200, on: [drop, drift]}

The sample is drawn from the trace id (salted by the monitor's name), so the same traffic gives
the same sample, and a monitor's sample is independent of review's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from keel.checks import CheckError, make_check
from keel.checks.registry import BoundCheck
from keel.errors import UserError
from keel.timespan import parse_span

KIND = "monitor"  # the job kind that scores a sampled run
SWEEP_S = 300.0  # how often windows are compared (keel.monitor's sweeper)
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertSpec(_Section):
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


class MonitorSpec(_Section):
    sample: float = Field(0.1, ge=0, le=1, description="share of live runs the checks score")
    checks: list[str | dict[str, Any]] = Field(default_factory=list, description="from the check registry")
    budget_usd_day: float = Field(1.0, ge=0, description="what the judges may spend a day; then they stop")
    window: str = "1d"
    reference: str = "7d"
    judge_model: str | None = Field(None, description="the model judged checks call (default: the default model)")
    category: str | None = Field(
        None,
        description="the output field whose distribution is watched (default: a structured answer's 'label'); "
        "'answer' watches the whole answer, for a classifier that answers in plain text",
    )
    alert: AlertSpec = AlertSpec()

    @field_validator("checks")
    @classmethod
    def _checks(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        for spec in value:
            try:
                make_check(spec)
            except CheckError as exc:
                raise ValueError(exc.message) from None
        return value

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

    @model_validator(mode="after")
    def _judged(self) -> MonitorSpec:
        if self.checks and self.sample == 0:
            raise ValueError("checks score a sample of runs: give sample > 0 (e.g. 0.1), or drop the checks")
        return self

    @property
    def window_s(self) -> float:
        return parse_span(self.window, "window")

    @property
    def ref(self) -> Reference:
        return parse_reference(self.reference)

    def bound_checks(self) -> list[BoundCheck]:
        return [make_check(spec) for spec in self.checks]

    def warnings(self, name: str) -> list[str]:
        """What is legal but will not work as hoped (said when the spec loads)."""
        out = []
        if self.window_s < 2 * SWEEP_S:
            out.append(
                f"monitors.{name}.window: {self.window} is shorter than two comparison rounds "
                f"({int(2 * SWEEP_S / 60)} minutes); use 15m or more"
            )
        if self.checks:
            runs = self.alert.min_samples / self.sample if self.sample else float("inf")
            per_s = runs / self.window_s
            if per_s > 1:
                out.append(
                    f"monitors.{name}: judged checks reach min_samples {self.alert.min_samples} only at "
                    f"{per_s:.1f} runs/s ({int(runs)} runs a {self.window}); raise sample or lengthen the window"
                )
        return out


def sampled(trace_id: str, share: float, salt: str) -> bool:
    """Whether a run falls in a monitor's sample: a stable draw from its trace id and the monitor's name."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    digest = hashlib.blake2b(f"{salt}\x00{trace_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share
