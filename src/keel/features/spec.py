"""Feature specs: ``features/<name>.yaml`` parsed into typed objects; every error names the file,
the line and the field and says what is allowed. Sections a feature does not configure are None
and cost nothing at run time."""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path
from typing import Any, Literal

import jsonschema
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from keel.checks import CheckError, make_check
from keel.checks.registry import BoundCheck
from keel.config.settings import PII_KINDS, BudgetSettings
from keel.config.yamlfile import LocatedYAML, describe_error, read_yaml
from keel.errors import ConfigError
from keel.errors import FeatureNotFound as FeatureNotFound
from keel.features.conditions import Condition, ConditionError, parse_condition
from keel.features.monitoring import NAME as MONITOR_NAME
from keel.features.monitoring import MonitorSpec
from keel.guards.actions import ActionSpec
from keel.rag.retrieval import DEFAULT_FLOOR

log = logging.getLogger("keel.features")
MONITOR_FAILED = "monitor failed"
_SCHEMAS: dict[Path, tuple[Any, dict[str, Any]]] = {}


SCHEMA_KEYS = {"type", "properties", "$ref", "anyOf", "oneOf", "allOf", "enum"}
INPUT_GUARDS = {"injection", "pii_redact", "max_tokens"}
OUTPUT_GUARDS = {"grounded", "citations", "unsafe", "schema", "pii"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrievalSpec(Section):
    collection: str
    top_k: int = Field(6, ge=1, le=50)
    rerank: bool = Field(False, description="apply the collection's reranker to the retrieved hits")
    min_score: float = Field(DEFAULT_FLOOR, ge=-1, le=1, description="below this cosine, no model call: I don't know")
    mode: Literal["hybrid", "keyword", "vector"] = "hybrid"
    feedback: bool = Field(True, description="pseudo-relevance feedback: +2 nDCG points, ~1 ms at 10k chunks")
    group_by: Literal["document", "chunk"] = Field(
        "chunk", description="document: the top_k sources come from distinct documents first"
    )
    max_chunks_per_document: int = Field(2, ge=1, le=10, description="with group_by: document")
    merge_adjacent: bool = Field(True, description="a document's neighbouring chunks become one source")
    cite: Literal["attribute", "model"] = Field(
        "attribute",
        description="attribute: a sentence the model left uncited gets the source that supports it (the grounded "
        "rule); model: only the model's own [n] markers",
    )


class OutputSpec(Section):
    schema_path: str | None = Field(None, alias="schema")
    pydantic: str | None = Field(None, description="a Pydantic model instead of a schema file: 'package.module:Class'")
    retries: int = Field(2, ge=0, le=5)
    max_retry_tokens: int = Field(4000, ge=1)
    fallback: Any = Field(None, description="a deterministic answer when every attempt fails")

    @model_validator(mode="after")
    def _one_schema(self) -> OutputSpec:
        if self.schema_path and self.pydantic:
            raise ValueError("give either 'schema' (a JSON Schema file) or 'pydantic' (module:Class), not both")
        if self.pydantic is not None and not re.fullmatch(r"[\w.]+:[\w.]+", self.pydantic):
            raise ValueError(f"pydantic: '{self.pydantic}' is not 'package.module:Class'")
        return self

    def load_schema(self, root: Path) -> dict[str, Any] | type[BaseModel]:
        """The JSON Schema (read from the file) or the Pydantic model class (imported)."""
        if self.pydantic:
            module_name, _, attr = self.pydantic.partition(":")
            try:
                target: Any = importlib.import_module(module_name)
                for part in attr.split("."):
                    target = getattr(target, part)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"output.pydantic: cannot import {self.pydantic} ({exc})") from None
            if not (isinstance(target, type) and issubclass(target, BaseModel)):
                raise ConfigError(f"output.pydantic: {self.pydantic} is not a Pydantic model class")
            return target
        assert self.schema_path is not None
        path = root / self.schema_path
        signature = _signature(path)
        cached = _SCHEMAS.get(path)
        if cached is None or cached[0] != signature:
            cached = (signature, orjson.loads(path.read_bytes()))
            _SCHEMAS[path] = cached
        data: dict[str, Any] = cached[1]
        return data


class GuardRule(Section):
    name: str
    action: Literal["block", "flag", "redact", "fallback"] | None = Field(
        None, description="default: block for injection, flag for output guards"
    )
    threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="default: the model's (injection: for inputs; retrieved text keeps the "
        "document threshold), 0.8 (grounded)",
    )
    restore: bool = Field(True, description="pii_redact: put the redacted values back into the answer")
    keep: list[str] = Field(
        default_factory=lambda: ["LOCATION"],
        description="pii_redact and pii: kinds to leave as they are; places by default (a country alone is not "
        "personal data), [] to redact them too",
    )
    limit: int = Field(4000, ge=1, le=10_000_000, description="max_tokens: the most input tokens a request may carry")

    @field_validator("keep")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        unknown = [k for k in value if k not in PII_KINDS]
        if unknown:
            raise ValueError(f"unknown kind(s) {', '.join(unknown)}: use {', '.join(PII_KINDS)}")
        return value


class GuardsSpec(Section):
    """``input: [injection]`` or ``input: [{name: injection, action: flag, threshold: 0.8}]``."""

    input: list[GuardRule] = Field(default_factory=list)
    output: list[GuardRule] = Field(default_factory=list)

    @field_validator("input", "output", mode="before")
    @classmethod
    def _rules(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        rules = [{"name": v} if isinstance(v, str) else v for v in value]
        allowed = INPUT_GUARDS if info.field_name == "input" else OUTPUT_GUARDS
        names = [r.get("name") for r in rules if isinstance(r, dict)]
        unknown = sorted(str(n) for n in names if n not in allowed)
        if unknown:
            raise ValueError(f"unknown {info.field_name} guard(s) {unknown}; use {sorted(allowed)}")
        return rules

    def rule(self, name: str) -> GuardRule | None:
        return next((r for r in [*self.input, *self.output] if r.name == name), None)


class SemanticCacheSpec(Section):
    threshold: float = Field(0.85, ge=0.5, le=1, description="cosine floor; the gate checks what it lets through")


class CacheSpec(Section):
    exact: bool = True
    semantic: SemanticCacheSpec | None = None
    ttl_s: float = Field(86_400, gt=0, le=365 * 86_400)


def cheap_checks(specs: list[str | dict[str, Any]], what: str) -> list[str | dict[str, Any]]:
    """Checks from the registry that need no model call (a routing decision must be cheap)."""
    for spec in specs:
        try:
            check = make_check(spec)
        except CheckError as exc:
            raise ValueError(exc.message) from None
        if check.requires_llm:
            raise ValueError(f"check '{check.name}' calls a model; {what} must be cheap and deterministic")
    return specs


class RouteSpec(Section):
    """Tier routing: ``first`` answers; when any ``when`` check holds on its answer (the check
    registry's: says-dont-know, not-citations-valid, regex…), ``escalate_to`` answers instead."""

    first: str
    escalate_to: str
    when: list[str | dict[str, Any]] = Field(min_length=1)

    @field_validator("when")
    @classmethod
    def _checks(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        return cheap_checks(value, "routing rules")

    def checks(self) -> list[BoundCheck]:
        return [make_check(spec) for spec in self.when]


class BudgetSpec(Section):
    per_call_usd: float | None = Field(None, gt=0)
    per_user_day_usd: float | None = Field(None, gt=0)

    def budgets(self, feature: str) -> dict[str, BudgetSettings]:
        """The feature's own budgets, joining keel.yaml's for its model calls."""
        if self.per_user_day_usd is None:
            return {}
        daily = BudgetSettings(match={"feature": feature}, per="user", period="day", usd=self.per_user_day_usd)
        return {f"{feature}.per_user_day": daily}


class ReviewSpec(Section):
    """Human review (keel.review): which answers go to a person, and what the caller gets meanwhile."""

    when: str | list[str | dict[str, Any]] | None = Field(
        None,
        description="a condition ('confidence < 0.6', keel.features.conditions), a list of checks, or "
        "'monitor failed' (a monitor's check failed on the run)",
    )
    mode: Literal["hold", "after"] = Field(
        "after", description="hold: the caller gets 202 and a job until a person decides; after: served, then queued"
    )
    queue: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    sample: float = Field(0.0, ge=0, le=1, description="a share of all answers queued too, so reviewers see good ones")
    sla_minutes: float = Field(60.0, gt=0, le=30 * 24 * 60)
    on_timeout: Literal["serve", "fallback"] = Field("serve", description="hold: what a held answer becomes at SLA")
    message: str = Field("A person is checking this answer", min_length=1, max_length=500)
    fallback: Any = Field(None, description="served on reject (default: output.fallback, else a short apology)")

    @field_validator("when")
    @classmethod
    def _when(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() == MONITOR_FAILED:
            return MONITOR_FAILED
        if isinstance(value, str):
            try:
                parse_condition(value)
            except ConditionError as exc:
                raise ValueError(str(exc)) from None
        elif isinstance(value, list):
            if not value:
                raise ValueError("give a condition or at least one check")
            cheap_checks(value, "review routing")
        return value

    @model_validator(mode="after")
    def _something(self) -> ReviewSpec:
        if self.when is None and self.sample == 0:
            raise ValueError("say which answers go to review: 'when' (e.g. \"confidence < 0.6\"), 'sample', or both")
        if self.when == MONITOR_FAILED and self.mode == "hold":
            raise ValueError("'monitor failed' is known only after the answer was served: use mode: after")
        return self

    @property
    def after_monitors(self) -> bool:
        """``when: monitor failed``: a run goes to review once a monitor's check fails on it (scored
        off the request path, so it is reviewed after it was served)."""
        return self.when == MONITOR_FAILED

    def condition(self, guards: set[str] | None = None) -> Condition | None:
        if not isinstance(self.when, str) or self.after_monitors:
            return None
        return parse_condition(self.when, guards=guards)

    def checks(self) -> list[BoundCheck]:
        return [make_check(item) for item in self.when] if isinstance(self.when, list) else []


class ContextSpec(Section):
    policy: Literal["fail", "truncate_history", "map_reduce"] = "fail"
    input: str | None = Field(
        None, description="map_reduce: the input holding the long document (default: the longest)"
    )
    summary_tokens: int = Field(512, ge=32, le=8192)
    max_summaries: int = Field(200, ge=1, le=100_000, description="map_reduce: refuse a document needing more")


class FeatureSpec(Section):
    name: str = ""
    prompt: str
    model: str | None = None
    retrieval: RetrievalSpec | None = None
    output: OutputSpec | None = None
    guards: GuardsSpec | None = None
    cache: CacheSpec | None = None
    budget: BudgetSpec | None = None
    review: ReviewSpec | None = None
    route: RouteSpec | None = None
    monitors: dict[str, MonitorSpec] = Field(
        default_factory=dict, description="online evals and drift on live runs (keel.monitor)"
    )
    actions: dict[str, ActionSpec] = Field(default_factory=dict, description="critical actions rules decide")
    context: ContextSpec = ContextSpec()
    evals: str | None = None
    tenants: list[str] | None = Field(
        None, description="the tenants that may run this feature (default: every tenant); others get 404"
    )
    description: str = ""

    @field_validator("monitors")
    @classmethod
    def _monitor_names(cls, value: dict[str, MonitorSpec]) -> dict[str, MonitorSpec]:
        for name in value:
            if not re.match(MONITOR_NAME, name):
                raise ValueError(f"'{name[:80]}' is not a monitor name (letters, digits, _ . -; up to 64)")
        return value

    def check_tenant(self, tenant: str | None) -> None:
        """A tenant the spec does not list is told the feature does not exist (404, never 403)."""
        if self.tenants is not None and (tenant or "default") not in self.tenants:
            raise FeatureNotFound(f"no feature '{self.name}'")


def parse_feature(doc: LocatedYAML, name: str, root: Path | None = None) -> FeatureSpec:
    data = doc.data
    if not isinstance(data, dict):
        raise ConfigError(f"{doc.source}:1: a feature is a mapping (prompt, model, retrieval, …)")
    try:
        spec = FeatureSpec.model_validate({**data, "name": name})
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, doc)) from None
    if spec.review is not None and spec.review.after_monitors and not any(m.checks for m in spec.monitors.values()):
        raise ConfigError(
            f"{doc.where(('review', 'when'))}: review.when: 'monitor failed' needs a monitor with checks "
            "(monitors: {quality: {sample: 0.1, checks: [grounded]}})"
        )
    if spec.review is not None and isinstance(spec.review.when, str) and not spec.review.after_monitors:
        guards = {r.name for r in spec.guards.output} if spec.guards is not None else set()
        try:
            condition = spec.review.condition(guards)
        except ConditionError as exc:
            raise ConfigError(f"{doc.where(('review', 'when'))}: review.when: {exc}") from None
        if condition is not None and "confidence" in condition.names and not guards:
            raise ConfigError(
                f"{doc.where(('review', 'when'))}: review.when: 'confidence' comes from the output guards, and this "
                "feature declares none; add guards: {output: [grounded]} (or citations, schema, unsafe)"
            )
    for monitor, watch in spec.monitors.items():
        for warning in watch.warnings(monitor):
            log.warning("%s: %s", doc.where(("monitors", monitor)), warning)
    if root is not None:
        _check_files(spec, doc, root)
    return spec


def _check_files(spec: FeatureSpec, doc: LocatedYAML, root: Path) -> None:
    if not (root / "prompts" / f"{spec.prompt}.md").is_file():
        raise ConfigError(f"{doc.where(('prompt',))}: prompt: no prompts/{spec.prompt}.md")
    schema = spec.output.schema_path if spec.output else None
    if schema:
        path = root / schema
        where = doc.where(("output", "schema"))
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"{where}: output.schema: no file {schema}") from None
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{where}: output.schema: {schema} is not JSON ({exc})") from None
        if not isinstance(data, dict) or not (SCHEMA_KEYS & set(data)):
            raise ConfigError(f"{where}: output.schema: {schema} is not a JSON Schema object (it has no type)")
        try:
            jsonschema.validators.validator_for(data).check_schema(data)
        except jsonschema.SchemaError as exc:
            at = "/".join(str(p) for p in exc.path) or "(root)"
            raise ConfigError(
                f"{where}: output.schema: {schema} is not a valid JSON Schema at {at}: {exc.message}"
            ) from None


def _signature(*paths: Path) -> tuple[tuple[int, int, int] | None, ...]:
    """What identifies a file version cheaply: inode (editors replace files), mtime and size."""
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            stat = path.stat()
            out.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


_LOADED: dict[Path, tuple[tuple[tuple[int, int, int] | None, ...], FeatureSpec]] = {}


def load_feature(root: Path, name: str) -> FeatureSpec:
    """``root/features/<name>.yaml``, validated against the prompts and schemas under ``root``.
    Parsed once and kept until the spec, its prompt or its schema file changes on disk."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise FeatureNotFound(f"'{name}' is not a feature name")
    path = root / "features" / f"{name}.yaml"
    cached = _LOADED.get(path)
    if cached is not None and _signature(*_files(root, path, cached[1])) == cached[0]:
        return cached[1]
    if not path.is_file():
        known = sorted(p.stem for p in (root / "features").glob("*.yaml")) if (root / "features").is_dir() else []
        raise FeatureNotFound(f"no feature '{name}' (features: {', '.join(known) or 'none'})")
    spec = parse_feature(read_yaml(path), name, root)
    _LOADED[path] = (_signature(*_files(root, path, spec)), spec)
    return spec


def _files(root: Path, path: Path, spec: FeatureSpec) -> list[Path]:
    """The files a parsed spec depends on: itself, its prompt and its schema."""
    files = [path, root / "prompts" / f"{spec.prompt}.md"]
    if spec.output is not None and spec.output.schema_path:
        files.append(root / spec.output.schema_path)
    return files
