"""JSON Schema in one place: each schema meta-validated and compiled once, and replies parsed and
validated against it (code fences tolerated). Structured output and the json-schema check share it."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import orjson

from keel.errors import ConfigError

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


_VALIDATORS: dict[bytes, Any] = {}


def validator(schema: dict[str, Any]) -> Any:
    """The schema checked against its meta-schema and compiled, once per distinct schema."""
    key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    found = _VALIDATORS.get(key)
    if found is None:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(f"not a valid JSON Schema: {exc.message}") from None
        if len(_VALIDATORS) > 256:
            _VALIDATORS.clear()
        found = _VALIDATORS[key] = cls(schema)
    return found


def check_schema(schema: dict[str, Any]) -> None:
    validator(schema)


def parse_and_validate(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """(value, None) when valid, (None, what is wrong) otherwise. Code fences are tolerated."""
    fenced = _FENCE.match(text)
    raw = fenced.group(1) if fenced else text.strip()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"the reply is not JSON ({exc})"
    errors = sorted(validator(schema).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return None, f"at {where}: {first.message}{more}"
    return value, None
