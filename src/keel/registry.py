"""One door for every pluggable kind (rerankers, retrieval backends, ledgers, …): built-ins and
plugins are entries of the same table. A built-in is named by ``"module:attribute"`` like an entry
point, so nothing is imported before it is asked for; a plugin comes from the kind's entry point
group, or from ``register`` (a test, an application)::

    [project.entry-points."keel.rerankers"]
    bge = "my_package.rerank:make_bge"

Unknown names fail with what is known and the closest match.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar, cast

from keel.errors import ConfigError

F = TypeVar("F")


class Registry(Generic[F]):
    def __init__(self, kind: str, group: str, builtins: Mapping[str, str]) -> None:
        self.kind = kind  # how errors name it: "reranker", "retrieval backend"
        self.group = group
        self._entries: dict[str, str | F] = dict(builtins)
        self._plugins_loaded = False

    def register(self, name: str, factory: F) -> None:
        self._entries[name] = factory

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def get(self, name: str, *, where: str = "") -> F:
        """The factory registered as ``name``; ``where`` says which setting named it, for the error."""
        self._load_plugins()
        entry = self._entries.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            at = f"{where}: " if where else ""
            raise ConfigError(f"{at}unknown {self.kind} '{name}' (known: {', '.join(self.names())}){hint}")
        if isinstance(entry, str):
            entry = cast(F, _load(entry))
            self._entries[name] = entry
        return entry

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            self._entries.setdefault(ep.name, ep.value)  # a built-in's name is not a plugin's to take


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load '{target}': {exc}") from None
