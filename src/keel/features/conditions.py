"""Conditions over a finished run, as one-line expressions a feature spec can hold:

    confidence < 0.6
    guards.grounded < 0.8 or not citations_valid
    model == "accurate" and cost_usd > 0.01

The language is a small, safe subset of Python's expression syntax, parsed once when the spec loads
(a mistake is an error naming the file, line and column) and evaluated with no ``eval``: names,
dotted names (``guards.<name>``), numbers, strings, ``True``/``False``/``None``, comparisons
(``< <= > >= == !=``, chained), ``and``/``or``/``not`` and parentheses. Anything else — calls,
attributes of other things, arithmetic, subscripts — is refused.

Names a run offers (``NAMES``): ``confidence`` (the lowest output-guard score), ``guards.<name>``
(one output guard's score), ``cost_usd``, ``latency_ms``, ``attempts``, ``model``, ``prompt_version``,
``found_nothing``, ``cached``, ``citations_valid`` (every cited source was given), ``fallback``
(the declared fallback was served), ``says_dont_know`` and ``refusal`` (the answer is an "I don't
know" or a refusal, by the phrases of the checks of those names). A comparison with a value the run
does not have (no output guards, an unpriced call) is false, so ``confidence < 0.6`` never holds on
a run without guards.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

NAMES = (
    "confidence", "cost_usd", "latency_ms", "attempts", "model", "prompt_version", "found_nothing", "cached",
    "citations_valid", "fallback", "says_dont_know", "refusal",
)  # fmt: skip
MAX_LENGTH = 500
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
Values = Mapping[str, Any]


class ConditionError(ValueError):
    """An expression that does not parse, or uses what the language does not have."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed expression; call it with a run's values (``values_of``)."""

    text: str
    tree: ast.expr
    names: frozenset[str]

    def __call__(self, values: Values) -> bool:
        return bool(_eval(self.tree, values))

    def why(self, values: Values) -> str:
        """The expression with the run's values of its names, for a trace note."""
        shown = ", ".join(f"{n} {_show(_lookup(n, values))}" for n in sorted(self.names))
        return f"{self.text} ({shown})" if shown else self.text


def parse_condition(text: str, *, guards: set[str] | None = None) -> Condition:
    """Parse once; ``guards`` (the spec's output guards) makes ``guards.x`` for an undeclared x an error."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("a condition is a non-empty expression, e.g. 'confidence < 0.6'")
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"a condition is at most {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConditionError(f"'{text}' does not parse at column {exc.offset or 0}: {exc.msg}") from None
    names: set[str] = set()
    _check(tree, text, names, guards)
    return Condition(text.strip(), tree, frozenset(names))


def _check(node: ast.AST, text: str, names: set[str], guards: set[str] | None) -> None:
    where = f"column {getattr(node, 'col_offset', 0) + 1}"
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, text, names, guards)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, text, names, guards)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise ConditionError(f"'{text}': {where}: only < <= > >= == != compare here")
        for part in (node.left, *node.comparators):
            _check(part, text, names, guards)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, int | float | str | bool) and node.value is not None:
            raise ConditionError(f"'{text}': {where}: {node.value!r} is not a number, string or boolean")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        _check(node.operand, text, names, guards)
    elif isinstance(node, ast.Name):
        if node.id not in NAMES:
            raise ConditionError(
                f"'{text}': {where}: unknown name '{node.id}'; use {', '.join(NAMES)} or guards.<name>"
            )
        names.add(node.id)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "guards":
        if guards is not None and node.attr not in guards:
            declared = ", ".join(sorted(guards)) or "none"
            raise ConditionError(
                f"'{text}': {where}: guards.{node.attr} is not an output guard of this feature (declared: {declared})"
            )
        names.add(f"guards.{node.attr}")
    else:
        raise ConditionError(
            f"'{text}': {where}: {type(node).__name__.lower()} is not part of the condition language "
            "(names, numbers, strings, comparisons, and/or/not)"
        )


def _lookup(name: str, values: Values) -> Any:
    if name.startswith("guards."):
        guards = values.get("guards") or {}
        return guards.get(name.removeprefix("guards."))
    return values.get(name)


def _eval(node: ast.AST, values: Values) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, values) for v in node.values)
        return any(_eval(v, values) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        if isinstance(node.op, ast.Not):
            return operand is not None and not operand  # `not x` on a missing value is false, like a comparison
        return -operand
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, values)
            if (left is None or right is None) and type(op) not in (ast.Eq, ast.NotEq):
                return False  # a value the run does not have makes an ordering false
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError:
                return False  # a string against a number: not a match
            left = right
        return True
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values.get(node.id)
    assert isinstance(node, ast.Attribute)  # guards.<name>, the only attribute _check lets through
    return _lookup(f"guards.{node.attr}", values)


def _show(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.3g}"
    return repr(value) if isinstance(value, str) else str(value)
