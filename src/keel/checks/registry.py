"""Finding checks by name: built-ins and plugins (entry point group ``keel.checks``) through one
door, the ``not-`` prefix, and the metadata runners need (``requires_llm``)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from keel.checks.base import CheckContext, CheckError, Verdict
from keel.checks.builtin import BUILTIN, Params, Run
from keel.checks.grounded import grounded
from keel.checks.judged import llm_rubric

Factory = Callable[[Params], Run]
_REGISTRY: dict[str, tuple[Factory, bool]] = {
    **{name: (factory, False) for name, factory in BUILTIN.items()},
    "grounded": (grounded, False),  # True with method: llm (the factory says so)
    "llm-rubric": (llm_rubric, True),
}
_PLUGINS_LOADED = False


def register(name: str, factory: Factory, *, requires_llm: bool = False) -> None:
    """Add a check type (what a ``keel.checks`` entry point's target calls, or a test)."""
    if name.startswith("not-"):
        raise CheckError(f"'{name}': check names may not start with 'not-' (that prefix inverts a check)")
    _REGISTRY[name] = (factory, requires_llm)


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for ep in entry_points(group="keel.checks"):
        try:
            ep.load()(register)  # a plugin is a function that registers its checks
        except Exception as exc:
            raise CheckError(f"check plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from None


def available() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


@dataclass(frozen=True, slots=True)
class BoundCheck:
    name: str
    requires_llm: bool
    run: Run
    inverted: bool = False
    weight: float = 1.0

    def __call__(self, ctx: CheckContext) -> Verdict:
        """Run a check that needs no model call (``evaluate`` runs any check)."""
        verdict = self.run(ctx)
        if inspect.isawaitable(verdict):
            _close(verdict)
            raise CheckError(f"check '{self.name}' calls a model: await check.evaluate(ctx)")
        return self._invert(verdict)

    async def evaluate(self, ctx: CheckContext) -> Verdict:
        verdict = self.run(ctx)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return self._invert(verdict)

    def _invert(self, verdict: Verdict) -> Verdict:
        if not self.inverted:
            return verdict
        return Verdict(not verdict.passed, 1.0 - verdict.score, f"not ({verdict.reason})")


def _close(awaitable: Awaitable[Verdict]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # a coroutine never awaited would warn


def make_check(spec: str | dict[str, Any]) -> BoundCheck:
    """``"is-json"`` or ``{"type": "contains", "value": "refund", "weight": 2}``; ``not-`` inverts."""
    data = {"type": spec} if isinstance(spec, str) else dict(spec)
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise CheckError("a check needs a 'type' (e.g. contains, regex, json-schema)")
    base = kind.removeprefix("not-")
    _load_plugins()
    if base not in _REGISTRY:
        close = difflib.get_close_matches(base, _REGISTRY, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
        raise CheckError(f"unknown check '{kind}'{hint}")
    factory, requires_llm = _REGISTRY[base]
    params = Params(kind, data)
    weight = params.number("weight", 1.0, 0, 1000)
    run = factory(params)
    params.finish()
    return BoundCheck(kind, requires_llm or params.needs_llm, run, kind != base, weight)
