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

import hashlib
from typing import Any

from pydantic import Field, field_validator, model_validator

from keel.checks import CheckError, make_check
from keel.checks.registry import BoundCheck
from keel.config.monitors import SWEEP_S, Watch

KIND = "monitor"  # the job kind that scores a sampled run
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class MonitorSpec(Watch):
    sample: float = Field(0.1, ge=0, le=1, description="share of live runs the checks score")
    checks: list[str | dict[str, Any]] = Field(default_factory=list, description="from the check registry")
    budget_usd_day: float = Field(1.0, ge=0, description="what the judges may spend a day; then they stop")
    judge_model: str | None = Field(None, description="the model judged checks call (default: the default model)")
    category: str | None = Field(
        None,
        description="the output field whose distribution is watched (default: a structured answer's 'label'); "
        "'answer' watches the whole answer, for a classifier that answers in plain text",
    )

    @field_validator("checks")
    @classmethod
    def _checks(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        for spec in value:
            try:
                make_check(spec)
            except CheckError as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _judged(self) -> MonitorSpec:
        if self.checks and self.sample == 0:
            raise ValueError("checks score a sample of runs: give sample > 0 (e.g. 0.1), or drop the checks")
        return self

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


def sampled(trace_id: str, share: float, salt: str = "") -> bool:
    """Whether a run falls in a sample of ``share``: a stable draw from its trace id, so a retried
    job or a backfill draws the same way. ``salt`` (a monitor's name) makes samples independent of
    each other and of review's (which has none)."""
    if share <= 0:
        return False
    key = f"{salt}\x00{trace_id}" if salt else trace_id
    draw = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64
    return draw < share
