"""The data policy, enforced on every model call: which kinds of personal data may leave the
machine, to which provider. Local deployments see everything; a remote one sees what ``allow``
grants it (by deployment name or provider kind), else ``default`` — nothing, unless said. A call
that would send more is redacted (placeholders, restored in the answer), rerouted to a local model,
or refused, as ``on_violation`` says; the trace notes which kinds were kept back from whom.

Because an alias may fall back from one deployment to another, a call is held to the strictest
deployment it could reach. Every text the request sends is held to it (``keel.guards.outbound``):
contents of every shape, tool-call arguments, tool descriptions, ``user``, ``metadata`` and other
forwarded fields. Names and places (spaCy) are looked for in user turns only; every text gets the
checksummed patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keel.config.settings import PII_KINDS, DataPolicySettings
from keel.errors import PolicyViolation as PolicyViolation
from keel.guards.outbound import outbound_texts, rewrite
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


def enforce(
    policy: DataPolicySettings,
    messages: list[Any],
    targets: list[tuple[str, str, bool]],
    params: dict[str, Any] | None = None,
) -> Decision:
    """Check (and, for ``redact``, rewrite) every text bound for ``targets`` — (deployment,
    provider, local) of every deployment the call could reach: ``messages`` in place (each changed
    message replaced, never edited), ``params`` (the other forwarded fields) in place by key."""
    allowed = ALL
    for deployment, provider, local in targets:
        allowed &= allowed_for(policy, deployment, provider, local)
    decision = Decision(allowed)
    if not policy.enabled or allowed == ALL:
        return decision
    params = params if params is not None else {}
    found_texts = outbound_texts(messages, params)
    # names are looked for in what people wrote (user turns); system prompts, the retrieved
    # documents inside them, tool arguments and other fields get the checksummed patterns only —
    # spaCy over kilobytes of context on every call would cost tens of milliseconds
    people = [policy.names and t.written_by_user for t in found_texts]
    texts, mapping, found = redact_many([t.text for t in found_texts], ner=people, keep=allowed)
    decision.found = found
    if policy.on_violation == "redact" and found:
        decision.mapping = mapping
        for where, new in zip(found_texts, texts, strict=True):
            if new == where.text:
                continue
            if where.where == "messages":
                i = int(where.path[0])
                messages[i] = rewrite(messages[i], where.path[1:], new)
            else:
                key = str(where.path[0])
                params[key] = rewrite(params[key], where.path[1:], new)
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
