"""Adapters register through one door, the ``keel.providers`` entry point group — built-ins too."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import cast

from keel.errors import ConfigError
from keel.providers.base import ProviderFactory


def provider_factories() -> dict[str, ProviderFactory]:
    found: dict[str, ProviderFactory] = {}
    for ep in entry_points(group="keel.providers"):
        found[ep.name] = cast(ProviderFactory, ep)  # loaded lazily in ``factory``
    return found


def factory(name: str, known: dict[str, ProviderFactory] | None = None) -> ProviderFactory:
    known = provider_factories() if known is None else known
    entry = known.get(name)
    if entry is None:
        raise ConfigError(f"unknown provider '{name}' (installed: {', '.join(sorted(known))})")
    load = getattr(entry, "load", None)
    return cast(ProviderFactory, load()) if load else entry
