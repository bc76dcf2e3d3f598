"""The one input-guard step, for raw chat calls and feature runs alike: size first, then the
injection screen. Over the size: ``InputTooLong`` (400 ``input_too_long``, like OpenAI's own
over-length answer). Flagged: ``InjectionBlocked`` (400 ``prompt_injection``) or, when the rule
says ``flag``, a note for the trace.

The two callers differ only in what they hand over: raw chat its message texts (the injection
screen reads the last user message, and each tool result since, on the ``tool`` channel), a feature
its text inputs (each one screened). A rule's ``threshold`` is for user text; text the model reads
keeps the document threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from keel.errors import InjectionBlocked, InputTooLong
from keel.guards.screen import screen
from keel.text import estimate_tokens


@dataclass(frozen=True, slots=True)
class InputGuard:
    max_tokens: int | None = None
    limit_name: str = "max_tokens"  # the size rule's name in errors
    allows: str = "the limit is"  # how the error names the limit: "this feature takes", "… allows"
    inject: bool = False
    threshold: float | None = None  # None: the trained model's
    action: str = "block"  # block | flag

    def check(
        self,
        sized: Mapping[str, str],
        screened: Mapping[str, str] | None = None,
        *,
        what: str = "inputs",
        channels: Mapping[str, str] | None = None,
    ) -> str | None:
        """Size ``sized`` (all texts), screen ``screened`` (default: the same), each on its channel
        (``channels``: label → channel; default ``user``). Raises on block; returns a note when a text
        was flagged and the rule says flag."""
        if self.max_tokens is not None:
            tokens = sum(estimate_tokens(text) for text in sized.values())
            if tokens > self.max_tokens:
                raise InputTooLong(
                    f"guard '{self.limit_name}': the {what} are ~{tokens:,} tokens; {self.allows} {self.max_tokens:,}"
                )
        if not self.inject:
            return None
        for label, text in (sized if screened is None else screened).items():
            channel = (channels or {}).get(label, "user")
            verdict = screen(text, channel=channel, threshold=self.threshold if channel == "user" else None)
            if not verdict.flagged:
                continue
            why = "; ".join(verdict.reasons)
            if self.action == "block":
                raise InjectionBlocked(f"guard 'injection' blocked {label}: {why}")
            return f"guard injection: {label} flagged ({why})"
        return None
