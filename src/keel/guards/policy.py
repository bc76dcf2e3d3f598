"""The data policy, enforced on every model call: which kinds of personal data may leave the
machine, to which provider. Local deployments see everything; a remote one sees what ``allow``
grants it (by deployment name or provider kind), else ``default`` — nothing, unless said. A call
that would send more is redacted (placeholders, restored in the answer), rerouted to a local model,
or refused, as ``on_violation`` says; the trace notes which kinds were kept back from whom.

Because an alias may fall back from one deployment to another, a call is held to the strictest
deployment it could reach. Names and places (spaCy) are looked for in user turns only; every message
gets the checksummed patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keel.config.settings import PII_KINDS, DataPolicySettings
from keel.errors import PolicyViolation as PolicyViolation
from keel.guards.pii import Finding, redact_many, restore

ALL = frozenset(PII_KINDS)


@dataclass(slots=True)
class Decision:
    allowed: frozenset[str]
    found: list[Finding] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder → value, to restore the answer
    note: str | None = None
    reroute: str | None = None

    @property
    def withheld(self) -> list[str]:
        return sorted({f.kind for f in self.found if f.kind not in self.allowed})


def allowed_for(policy: DataPolicySettings, deployment: str, provider: str, local: bool) -> frozenset[str]:
    if local:
        return ALL
    granted = policy.allow.get(deployment, policy.allow.get(provider, policy.default))
    return ALL if "all" in granted else frozenset(granted)


def _texts(messages: list[Any]) -> list[tuple[int, str]]:
    return [
        (i, m["content"]) for i, m in enumerate(messages) if isinstance(m, dict) and isinstance(m.get("content"), str)
    ]


def enforce(policy: DataPolicySettings, messages: list[Any], targets: list[tuple[str, str, bool]]) -> Decision:
    """Check (and, for ``redact``, rewrite in place) the messages bound for ``targets`` —
    (deployment, provider, local) of every deployment the call could reach."""
    allowed = ALL
    for deployment, provider, local in targets:
        allowed &= allowed_for(policy, deployment, provider, local)
    decision = Decision(allowed)
    if not policy.enabled or allowed == ALL:
        return decision
    positions = _texts(messages)
    # names are looked for in what people wrote (user turns); system prompts and the retrieved
    # documents inside them get the checksummed patterns only — spaCy over kilobytes of context on
    # every call would cost tens of milliseconds
    people = [policy.names and messages[i].get("role") == "user" for i, _ in positions]
    texts, mapping, found = redact_many([t for _, t in positions], ner=people, keep=allowed)
    decision.found = found
    if policy.on_violation == "redact" and found:
        decision.mapping = mapping
        for (i, _), text in zip(positions, texts, strict=True):
            messages[i] = {**messages[i], "content": text}
    if not decision.found:
        return decision
    kinds = ", ".join(decision.withheld)
    names = ", ".join(sorted({t[0] for t in targets if not t[2]}))
    if policy.on_violation == "block":
        raise PolicyViolation(
            f"the data policy keeps {kinds} from {names}; remove them, or allow them in keel.yaml data_policy"
        )
    if policy.on_violation == "reroute":
        decision.reroute = policy.reroute_to
        decision.note = f"policy: {kinds} may not go to {names}; rerouted to {policy.reroute_to}"
    else:
        decision.note = f"policy: {kinds} withheld from {names} (placeholders, restored in the answer)"
    return decision


def restore_answer(text: str, decision: Decision | None) -> str:
    return restore(text, decision.mapping) if decision is not None and decision.mapping else text


class StreamRestorer:
    """Puts redacted values back into a streamed answer: a placeholder may be split across chunks,
    so a trailing ``<…`` is held until the next chunk closes it (or the stream ends)."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping
        self.pending = ""

    def feed(self, text: str) -> str:
        text, self.pending = self.pending + text, ""
        cut = text.rfind("<")
        if cut != -1 and ">" not in text[cut:] and len(text) - cut <= 32:
            text, self.pending = text[:cut], text[cut:]
        return restore(text, self.mapping)

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return restore(text, self.mapping)
