"""Names in keel.yaml that point nowhere — a model's deployment, a local model, a provider, a
default, a mode — each with where the reference stands, so the loader can say file:line."""

from __future__ import annotations

import difflib
import os
from importlib.metadata import EntryPoint, entry_points

from keel.config.settings import KeelSettings

TESTING = "KEEL_TESTING"  # set to 1 by keel.testing: its fake providers are offered to this process and its children


def installed_providers() -> dict[str, EntryPoint]:
    """Provider adapters by name: the ``keel.providers`` entry points, and — in a test process only —
    the test kit's fakes (``keel.testing.providers``: ``scripted``), so a production install never
    offers a fake."""
    found = {ep.name: ep for ep in entry_points(group="keel.providers")}
    if os.environ.get(TESTING) == "1":
        for ep in entry_points(group="keel.testing.providers"):
            found.setdefault(ep.name, ep)
    return found


def reference_errors(settings: KeelSettings) -> list[tuple[tuple[str | int, ...], str]]:
    """Names that point nowhere, each with the location of the reference."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    for name, alias in settings.models.items():
        for i, dep in enumerate(alias.deployments):
            if dep not in settings.deployments:
                known = ", ".join(sorted(settings.deployments))
                errors.append((("models", name, "deployments", i), f"unknown deployment '{dep}' (known: {known})"))
        if alias.context_fallback and alias.context_fallback not in settings.models:
            errors.append((("models", name, "context_fallback"), f"unknown model '{alias.context_fallback}'"))
    providers = sorted(installed_providers())
    for dep_name, deployment in settings.deployments.items():
        if deployment.provider not in providers:
            close = difflib.get_close_matches(deployment.provider, providers, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            if deployment.provider in {ep.name for ep in entry_points(group="keel.testing.providers")}:
                hint = f"; '{deployment.provider}' is the test kit's fake: import keel.testing, or set {TESTING}=1"
            message = f"unknown provider '{deployment.provider}' (installed: {', '.join(providers)}){hint}"
            errors.append((("deployments", dep_name, "provider"), message))
        if deployment.provider == "local" and deployment.model not in settings.local_models:
            known = ", ".join(sorted(settings.local_models))
            message = f"unknown local model '{deployment.model}' (known: {known})"
            errors.append((("deployments", dep_name, "model"), message))
    embedder = settings.retrieval.embedder
    if embedder is not None and embedder not in settings.deployments and embedder not in settings.models:
        errors.append((("retrieval", "embedder"), f"'{embedder}' is neither a model alias nor a deployment"))
    if settings.store.backend == "postgres" and settings.store.url is None:
        errors.append((("store", "url"), 'the postgres store needs url: {"$env": "VAR"}'))
    if settings.retrieval_backend == "postgres" and settings.retrieval_url is None:
        errors.append((("retrieval", "postgres_url"), 'the postgres backend needs postgres_url: {"$env": "VAR"}'))
    if settings.default_model and settings.default_model not in settings.models:
        errors.append((("default_model",), f"unknown model '{settings.default_model}'"))
    if settings.data_policy.reroute_to and settings.data_policy.reroute_to not in settings.models:
        errors.append((("data_policy", "reroute_to"), f"unknown model '{settings.data_policy.reroute_to}'"))
    for mode, target in settings.modes.items():
        if target not in settings.models:
            errors.append((("modes", mode), f"unknown model '{target}' (known: {', '.join(sorted(settings.models))})"))
    if settings.ledger.backend == "redis" and settings.ledger.redis_url is None:
        errors.append((("ledger", "redis_url"), 'the redis ledger needs redis_url: {"$env": "VAR"}'))
    for name, monitor in settings.monitors.items():
        for i, wanted in enumerate(monitor.models or []):
            if wanted not in settings.models:
                close = difflib.get_close_matches(wanted, list(settings.models), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(sorted(settings.models))})"
                errors.append((("monitors", name, "models", i), f"unknown model '{wanted}'{hint}"))
    seen: dict[tuple[str, ...], str] = {}
    for name, budget in settings.budgets.items():
        scope = (*sorted(f"{k}={v}" for k, v in budget.match.items()), f"per={budget.per}", budget.period)
        if scope in seen:
            message = f"covers the same calls over the same period as budget '{seen[scope]}'; merge them"
            errors.append((("budgets", name), message))
        seen.setdefault(scope, name)
    return errors
