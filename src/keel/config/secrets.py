"""Secrets by reference: config stores the name of a variable, never its value."""

from __future__ import annotations

import os
from dataclasses import dataclass

from keel.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SecretRef:
    """``{"$env": "OPENAI_API_KEY"}`` in YAML. The value is read when needed and never kept."""

    env: str

    def resolve(self) -> str:
        value = os.environ.get(self.env)
        if not value:
            raise ConfigError(f"the secret variable {self.env} is not set; export it before starting Keel")
        return value

    def __repr__(self) -> str:
        return f"SecretRef($env:{self.env})"

    __str__ = __repr__
