"""The settings' building blocks: a strict frozen model, and secrets as references to variables."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from keel.config.secrets import SecretRef


def _to_secret(value: Any) -> SecretRef | None:
    if value is None or isinstance(value, SecretRef):
        return value
    if isinstance(value, dict) and set(value) == {"$env"} and isinstance(value["$env"], str):
        return SecretRef(value["$env"])
    raise ValueError('secrets are references, not values: write {"$env": "VARIABLE_NAME"}')


Secret = Annotated[
    SecretRef | None, BeforeValidator(_to_secret), PlainSerializer(lambda s: {"$env": s.env} if s else None)
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
