"""Critical actions decided by rules, not the model: the model *proposes* (a structured answer such as
``{"action": "refund", "order_id": "ord_123", "amount": 40}``) and declared rules *decide*. A
proposal that matches a critical action and breaks any rule is replaced by the action's fallback,
with every broken rule on the trace.

    actions:
      refund:
        when: {action: refund}
        rules:
          - {field: amount, max: 100}                   # never more than $100 without a person
          - {field: amount, max_input: order_total}       # nor more than the order was
          - {field: order_id, matches: "^ord_[0-9]+$"}
          - {field: reason, one_of: [damaged, late, duplicate]}
        fallback: {action: escalate, note: "A person will review this refund."}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="a key of the proposal, dotted for nested ones (refund.amount)")
    required: bool = True
    equals: Any = None
    one_of: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    max_input: str | None = Field(None, description="at most the value of this input (e.g. order_total)")
    matches: str | None = None

    @field_validator("matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"matches: not a valid regular expression ({exc})") from None
        return value

    @model_validator(mode="after")
    def _range(self) -> Rule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        return self


class ActionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: dict[str, Any] = Field(min_length=1, description="the proposal fields that make it this action")
    rules: list[Rule] = Field(min_length=1)
    fallback: Any = Field(description="what is served instead when a rule is broken")


def _get(value: Any, path: str) -> tuple[bool, Any]:
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def broken(rule: Rule, proposal: Any, inputs: dict[str, Any]) -> str | None:
    """Why ``proposal`` breaks ``rule``, or None."""
    present, value = _get(proposal, rule.field)
    if not present or value is None:
        return f"{rule.field} is missing" if rule.required else None
    if rule.equals is not None and value != rule.equals:
        return f"{rule.field} is {value!r}, not {rule.equals!r}"
    if rule.one_of is not None and value not in rule.one_of:
        return f"{rule.field} {value!r} is not one of {rule.one_of}"
    if rule.matches is not None and (not isinstance(value, str) or not re.fullmatch(rule.matches, value)):
        return f"{rule.field} {value!r} does not match {rule.matches}"
    if rule.min is not None or rule.max is not None or rule.max_input is not None:
        number = _number(value)
        if number is None:
            return f"{rule.field} {value!r} is not a number"
        if rule.min is not None and number < rule.min:
            return f"{rule.field} {number:g} < {rule.min:g}"
        if rule.max is not None and number > rule.max:
            return f"{rule.field} {number:g} > {rule.max:g}"
        if rule.max_input is not None:
            ceiling = _number(inputs.get(rule.max_input))
            if ceiling is None:
                return f"input {rule.max_input} is missing or not a number, so {rule.field} cannot be checked"
            if number > ceiling:
                return f"{rule.field} {number:g} > input {rule.max_input} ({ceiling:g})"
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    allowed: bool
    reasons: list[str]


def decide(actions: dict[str, ActionSpec], proposal: Any, inputs: dict[str, Any]) -> Decision | None:
    """The first critical action the proposal matches, and whether its rules allow it."""
    for name, spec in actions.items():
        if all(_get(proposal, k) == (True, v) for k, v in spec.when.items()):
            reasons = [r for r in (broken(rule, proposal, inputs) for rule in spec.rules) if r]
            return Decision(name, not reasons, reasons)
    return None
