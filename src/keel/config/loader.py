"""Find, read, merge and validate configuration. Every error is one line naming file and line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from keel.config.defaults import default_config
from keel.config.references import reference_errors
from keel.config.settings import KeelSettings
from keel.config.yamlfile import LocatedYAML, parse_yaml, read_yaml
from keel.errors import ConfigError


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge two config dicts: maps of named things merge by name, everything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if key in ("local_models", "deployments", "models") and isinstance(value, dict):
            out[key] = {**base.get(key, {}), **value}
        else:
            out[key] = value
    return out


def _format(exc: ValidationError, doc: LocatedYAML) -> str:
    problems = []
    for err in exc.errors()[:3]:
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(f"{doc.where(loc)}: {path}: {msg}")
    more = f" (+{len(exc.errors()) - 3} more)" if len(exc.errors()) > 3 else ""
    return "; ".join(problems) + more


def settings_from_yaml(doc: LocatedYAML) -> KeelSettings:
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{doc.source}:1: the top level must be a mapping of settings")
    try:
        settings = KeelSettings.model_validate(_merge(default_config(), data))
    except ValidationError as exc:
        raise ConfigError(_format(exc, doc)) from None
    errors = reference_errors(settings)
    if errors:
        loc, msg = errors[0]
        raise ConfigError(f"{doc.where(loc)}: {'.'.join(str(p) for p in loc)}: {msg}")
    return settings


def find_config(explicit: str | Path | None = None) -> Path | None:
    """``--config`` wins, then ``KEEL_CONFIG``, then ``./keel.yaml``; None means built-in defaults."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("KEEL_CONFIG")
    if env:
        return Path(env)
    here = Path("keel.yaml")
    return here if here.exists() else None


def load_settings(explicit: str | Path | None = None) -> KeelSettings:
    path = find_config(explicit)
    if path is None:
        return settings_from_yaml(parse_yaml("{}", "(built-in defaults)"))
    settings = settings_from_yaml(read_yaml(path))
    if settings.prices and not settings.prices.is_absolute():
        settings = settings.model_copy(update={"prices": path.parent / settings.prices})
    return settings


def keel_home(settings: KeelSettings) -> Path:
    env = os.environ.get("KEEL_HOME")
    home = Path(env) if env else settings.home or Path.home() / ".keel"
    home = home.expanduser()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the data directory {home} ({exc.strerror}); set KEEL_HOME") from None
    return home
