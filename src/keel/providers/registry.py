"""Adapters register through one door, the ``keel.providers`` entry point group — built-ins too (the
test kit's fakes through ``keel.testing.providers``, offered to test processes only)."""

from __future__ import annotations

from typing import cast

from keel.config.references import installed_providers
from keel.errors import ConfigError
from keel.providers.base import ProviderFactory


def provider_factories() -> dict[str, ProviderFactory]:
    """Installed adapters (a test process also gets the test kit's fakes: keel.config.references)."""
    return {name: cast(ProviderFactory, ep) for name, ep in installed_providers().items()}  # loaded in ``factory``


def factory(name: str, known: dict[str, ProviderFactory] | None = None) -> ProviderFactory:
    known = provider_factories() if known is None else known
    entry = known.get(name)
    if entry is None:
        raise ConfigError(f"unknown provider '{name}' (installed: {', '.join(sorted(known))})")
    load = getattr(entry, "load", None)
    return cast(ProviderFactory, load()) if load else entry
