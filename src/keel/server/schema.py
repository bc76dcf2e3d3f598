"""Request bodies declared once. Each body is a tree of small field kinds, and the same tree does
two jobs. It validates a request, with one message shape everywhere (``'messages[0].role' must be
one of … (got 3)``) naming the offending ``param``. It also renders as the JSON Schema that
``/openapi.json`` publishes. So the published contract and the check cannot drift apart.

A rule across fields (a message's content may be absent only on an assistant turn with tool calls)
is a ``RequiredUnless`` on its object. What no tree states (a document's base64 must decode, an
input's token count) stays as code in ``validate.py``, after the tree's check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from keel.errors import InvalidRequest

MISSING = object()


def type_name(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _got(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else f"a string of {len(value):,} characters"
    name = type_name(value)
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


class Kind:
    """One field's kind: what it accepts (``check``), and how it is published (``schema``)."""

    expect = "a value"
    description = ""

    def check(self, value: Any, where: str) -> None:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def refuse(self, value: Any, where: str) -> InvalidRequest:
        return InvalidRequest(f"'{where}' must be {self.expect} (got {_got(value)})", param=where)

    def published(self) -> dict[str, Any]:
        out = self.schema()
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class Text(Kind):
    nonempty: bool = False
    max_length: int | None = None
    choices: tuple[str, ...] | None = None
    description: str = ""

    @property
    def expect(self) -> str:  # type: ignore[override]
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        size = f" of at most {self.max_length:,} characters" if self.max_length else ""
        return f"a non-empty string{size}" if self.nonempty else f"a string{size}"

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, str):
            raise self.refuse(value, where)
        if self.choices is not None and value not in self.choices:
            raise self.refuse(value, where)
        if (self.nonempty and not value.strip()) or (self.max_length is not None and len(value) > self.max_length):
            raise self.refuse(value, where)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.choices is not None:
            out["enum"] = list(self.choices)
        elif self.nonempty:
            out["minLength"] = 1
            out["pattern"] = r"\S"
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return out


@dataclass(frozen=True)
class _Bounded(Kind):
    """A JSON number within optional bounds (booleans, which Python counts as ints, are not numbers)."""

    low: float | None = None
    high: float | None = None
    description: str = ""
    json_type: ClassVar[str] = "number"
    python: ClassVar[type | tuple[type, ...]] = (int, float)

    def check(self, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, self.python) or value != value:
            raise self.refuse(value, where)
        number = float(cast(float, value))  # an int or a float, checked above
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            raise self.refuse(value, where)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.json_type}
        if self.low is not None:
            out["minimum"] = self.low
        if self.high is not None:
            out["maximum"] = self.high
        return out


@dataclass(frozen=True)
class Integer(_Bounded):
    low: int | None = None
    high: int | None = None
    says: str | None = None  # what to expect, when the range alone would read oddly
    json_type: ClassVar[str] = "integer"
    python: ClassVar[type | tuple[type, ...]] = int

    @property
    def expect(self) -> str:  # type: ignore[override]
        if self.says:
            return self.says
        if self.low == 1 and self.high is None:
            return "a positive integer"
        if self.low is not None and self.high is not None:
            return f"an integer from {self.low} to {self.high}"
        return "an integer" if self.low is None else f"an integer of at least {self.low}"


@dataclass(frozen=True)
class Number(_Bounded):
    @property
    def expect(self) -> str:  # type: ignore[override]
        if self.low is not None and self.high is not None:
            return f"a number from {self.low:g} to {self.high:g}"
        return "a number"


@dataclass(frozen=True)
class Boolean(Kind):
    expect = "true or false"
    description: str = ""

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, bool):
            raise self.refuse(value, where)

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class AnyValue(Kind):
    """Any JSON value (a feedback score, a feature's input)."""

    expect = "a JSON value"
    description: str = ""

    def check(self, value: Any, where: str) -> None:
        return None

    def schema(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Array(Kind):
    items: Kind = field(default_factory=AnyValue)
    min_items: int = 0
    max_items: int | None = None
    description: str = ""
    noun: str = ""  # "messages": "an array of messages"

    @property
    def expect(self) -> str:  # type: ignore[override]
        what = f"an array of {self.noun}" if self.noun else "an array"
        if self.min_items:
            what += f" with at least {self.min_items} item{'s' if self.min_items > 1 else ''}"
        return what + (f" (at most {self.max_items:,})" if self.max_items else "")

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, list) or len(value) < self.min_items:
            raise self.refuse(value, where)
        if self.max_items is not None and len(value) > self.max_items:
            raise InvalidRequest(
                f"'{where}' may hold at most {self.max_items:,} items (got {len(value):,})", param=where
            )
        for i, item in enumerate(value):
            self.items.check(item, f"{where}[{i}]")

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.items.published()}
        if self.min_items:
            out["minItems"] = self.min_items
        if self.max_items is not None:
            out["maxItems"] = self.max_items
        return out


@dataclass(frozen=True)
class OneOf(Kind):
    """The first kind that accepts the value wins (a message's content: a string, or parts)."""

    options: tuple[Kind, ...] = ()
    says: str = ""
    description: str = ""

    @property
    def expect(self) -> str:  # type: ignore[override]
        return self.says or " or ".join(o.expect for o in self.options)

    def check(self, value: Any, where: str) -> None:
        for option in self.options:
            if _shape_fits(option, value):
                option.check(value, where)  # the option's own message, now that the shape matched
                return
        raise self.refuse(value, where)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [o.published() for o in self.options]}


def _shape_fits(kind: Kind, value: Any) -> bool:
    """Whether ``value`` has the JSON type ``kind`` takes (its own check then judges the rest)."""
    if isinstance(kind, Integer | Number):
        wanted: type | tuple[type, ...] = int if isinstance(kind, Integer) else (int, float)
        return isinstance(value, wanted) and not isinstance(value, bool)
    shapes: dict[type, type | tuple[type, ...]] = {Text: str, Array: list, Obj: dict, Boolean: bool}
    wanted = shapes.get(type(kind), object)
    return isinstance(value, wanted)


@dataclass(frozen=True)
class RequiredUnless:
    """``field`` is required unless every ``equals`` field has its value and one of ``present`` is
    given (a message's content, except on an assistant turn that carries tool calls)."""

    field: str
    equals: Mapping[str, str]
    present: tuple[str, ...]

    def check(self, value: dict[str, Any], where: str) -> None:
        if value.get(self.field) is not None:
            return
        if all(value.get(k) == v for k, v in self.equals.items()) and any(value.get(p) for p in self.present):
            return
        raise InvalidRequest(f"'{_join(where, self.field)}' is required", param=_join(where, self.field))

    def schema(self) -> dict[str, Any]:
        given = {"not": {"type": "null"}}
        equal = {k: {"const": v} for k, v in self.equals.items()}
        exempt = [{"properties": {**equal, p: given}, "required": [*self.equals, p]} for p in self.present]
        return {"anyOf": [{"properties": {self.field: given}, "required": [self.field]}, *exempt]}


@dataclass(frozen=True)
class Obj(Kind):
    """An object: its known fields (absent or null means not given), which are required, and
    whether fields it does not know are allowed (OpenAI-compatible bodies forward them)."""

    fields: Mapping[str, Kind] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    extra: bool = True
    values: Kind | None = None  # the kind of every value, for maps (a feature's inputs)
    name: str = ""  # published under components/schemas
    description: str = ""
    says: str = "an object"
    rules: tuple[RequiredUnless, ...] = ()

    @property
    def expect(self) -> str:  # type: ignore[override]
        return self.says

    def check(self, value: Any, where: str = "") -> None:
        if not isinstance(value, dict):
            raise self.refuse(value, where or "the request body")
        for key in self.required:
            if value.get(key) is None:
                kind = self.fields[key]
                raise kind.refuse(MISSING, _join(where, key))
        if not self.extra:
            unknown = sorted(set(value) - set(self.fields))
            if unknown:
                raise InvalidRequest(
                    f"unknown field(s) {unknown} in {f'{where!r}' if where else 'the body'}; "
                    f"known: {', '.join(self.fields)}",
                    param=_join(where, unknown[0]),
                )
        for key, kind in self.fields.items():
            item = value.get(key)
            if item is not None:
                kind.check(item, _join(where, key))
        if self.values is not None:
            for key, item in value.items():
                if key not in self.fields:
                    self.values.check(item, _join(where, key))
        for rule in self.rules:
            rule.check(value, where)

    def schema(self) -> dict[str, Any]:
        props = {}
        for key, kind in self.fields.items():
            published = kind.published()
            props[key] = published if key in self.required else {"anyOf": [published, {"type": "null"}]}
        out: dict[str, Any] = {"type": "object", "properties": props}
        if self.required:
            out["required"] = list(self.required)
        if self.values is not None:
            out["additionalProperties"] = self.values.published()
        elif not self.extra:
            out["additionalProperties"] = False
        if self.rules:
            out["allOf"] = [r.schema() for r in self.rules]
        return out


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
