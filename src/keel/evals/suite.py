"""Eval suites: ``evals/<feature>.yaml`` — cases with inputs, expected answers and sources, checks
per case and suite-wide, and the gate. Every error names the file, line and field.

    feature: support_answer
    checks: [{type: not-refusal}]                 # run on every case
    cases:
      - id: refund-timing
        inputs: {question: "How long do card refunds take?"}
        expected: 5 to 10 business days
        expected_sources: [billing/refunds.md]
        checks: [{type: icontains, value: 10 business days}, {type: recall@k, k: 4}]
    gate: {min_pass_rate: 0.8, max_pass_rate_drop: 0.02, max_p95_latency_ms: 3000}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from keel.checks import CheckError, make_check
from keel.checks.registry import BoundCheck
from keel.config.yamlfile import describe_error, read_yaml
from keel.errors import ConfigError, UserError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gate(_Strict):
    min_pass_rate: float | None = Field(None, ge=0, le=1)
    max_pass_rate_drop: float | None = Field(None, ge=0, le=1, description="vs the baseline, in rate (0.02 = 2 points)")
    min_mean_score: float | None = Field(None, ge=0, le=1)
    min_check_score: dict[str, float] = Field(default_factory=dict, description="check type → mean score floor")
    max_cost_increase: float | None = Field(None, ge=0, description="vs the baseline, relative (0.1 = +10%)")
    max_p95_latency_ms: float | None = Field(None, gt=0)
    max_errors: int = Field(0, ge=0)

    @field_validator("min_check_score")
    @classmethod
    def _scores(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"scores are between 0 and 1: {bad}")
        return value


class Case(_Strict):
    id: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    expected: Any = None
    expected_sources: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    checks: list[str | dict[str, Any]] = Field(default_factory=list)
    user: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("a case id is 1–128 letters, digits, '_', '.', '-'")
        return value


class SuiteSpec(_Strict):
    feature: str
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict, description="inputs every case starts from")
    checks: list[str | dict[str, Any]] = Field(default_factory=list)
    threshold: float = Field(1.0, ge=0, le=1, description="a case passes when its weighted score reaches this")
    cases: list[Case]
    gate: Gate = Gate()
    concurrency: int = Field(4, ge=1, le=64)
    judge_model: str | None = Field(
        None, description="the model llm-rubric and grounded (llm) call; default: the default model"
    )

    @model_validator(mode="after")
    def _cases(self) -> SuiteSpec:
        if not self.cases:
            raise ValueError("a suite needs at least one case")
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"case id '{case.id}' is used twice")
            seen.add(case.id)
        return self


class Suite:
    """A parsed suite with its checks built (so a misconfigured check fails before any call)."""

    def __init__(self, spec: SuiteSpec, path: Path, checks: dict[str, list[BoundCheck]]) -> None:
        self.spec = spec
        self.path = path
        self.checks = checks  # case id → its checks (suite-wide first)

    @property
    def name(self) -> str:
        return self.path.stem


def load_suite(path: Path) -> Suite:
    if not path.is_file():
        raise UserError(f"no eval suite {path}")
    doc = read_yaml(path)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{path}:1: a suite is a mapping (feature, cases, checks, gate)")
    try:
        spec = SuiteSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, doc)) from None
    checks: dict[str, list[BoundCheck]] = {}
    suite_wide = [_build(c, doc.where(("checks", i)), "checks") for i, c in enumerate(spec.checks)]
    for n, case in enumerate(spec.cases):
        own = [_build(c, doc.where(("cases", n, "checks", i)), f"cases.{n}.checks") for i, c in enumerate(case.checks)]
        if not suite_wide and not own:
            raise ConfigError(f"{doc.where(('cases', n))}: case '{case.id}' has no checks (and the suite has none)")
        checks[case.id] = [*suite_wide, *own]
    return Suite(spec, path, checks)


def _build(spec: str | dict[str, Any], where: str, field: str) -> BoundCheck:
    try:
        return make_check(spec)
    except CheckError as exc:
        raise ConfigError(f"{where}: {field}: {exc.message}") from None


def find_suite(root: Path, name: str) -> Path:
    """``name`` as a path, or ``root/evals/<name>.yaml``."""
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
        return as_path
    candidate = root / "evals" / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in (root / "evals").glob("*.yaml")) if (root / "evals").is_dir() else []
    raise UserError(f"no eval suite '{name}' (suites in {root / 'evals'}: {', '.join(known) or 'none'})")
