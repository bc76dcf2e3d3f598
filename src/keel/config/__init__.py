"""Configuration: typed settings from keel.yaml, merged over the embedded default."""

from keel.config.loader import find_config, keel_home, load_settings, settings_from_yaml
from keel.config.secrets import SecretRef
from keel.config.settings import AliasSettings, DeploymentSettings, KeelSettings, LocalModelSettings

__all__ = [
    "AliasSettings",
    "DeploymentSettings",
    "KeelSettings",
    "LocalModelSettings",
    "SecretRef",
    "find_config",
    "keel_home",
    "load_settings",
    "settings_from_yaml",
]
