from __future__ import annotations

from pathlib import Path

import pytest

from keel.config import SecretRef, load_settings
from keel.errors import ConfigError
from tests.conftest import make_settings


def test_defaults_offer_local_tiers_and_embeddings(home: Path) -> None:
    settings = load_settings(None)
    assert {"local", "fast", "accurate", "all-minilm-l6-v2"} <= set(settings.models)
    assert settings.deployments["local"].provider == "local"
    assert settings.default_model == "local"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server:\n  prot: 1\n", "test.yaml:2: server.prot: unknown key"),
        ("server:\n  port: 99999\n", "test.yaml:2: server.port: Input should be less than or equal to 65535"),
        ("server:\n  port: eighty\n", "test.yaml:2: server.port: Input should be a valid integer"),
        ("a: [1,\n", "test.yaml:2: invalid YAML"),
        (
            "tracing: {capture: everything}\n",
            "test.yaml:1: tracing.capture: Input should be 'off', 'redacted' or 'full'",
        ),
        ("models:\n  x:\n    deployments: [nope]\n", "test.yaml:3: models.x.deployments.0: unknown deployment 'nope'"),
        ("models:\n  x:\n    deployments: []\n", "test.yaml:3: models.x.deployments: List should have at least 1 item"),
        (
            "deployments:\n  d: {provider: local, model: nope}\n",
            "test.yaml:2: deployments.d.model: unknown local model",
        ),
        ("deployments:\n  d: {provider: openai}\n", "test.yaml:2: deployments.d.model: required key is missing"),
        ("server: {}\nserver: {}\n", "test.yaml:2: invalid YAML: duplicate key 'server'"),
        ("- just\n- a list\n", "test.yaml:1: the top level must be a mapping"),
        (
            "deployments:\n  d:\n    provider: openai\n    model: m\n    api_key: sk-live-123\n",
            'test.yaml:5: deployments.d.api_key: secrets are references, not values: write {"$env": "VARIABLE_NAME"}',
        ),
        ("default_model: ghost\n", "test.yaml:1: default_model: unknown model 'ghost'"),
        (
            "deployments:\n  d:\n    provider: opnai\n    model: m\n",
            "test.yaml:3: deployments.d.provider: unknown provider 'opnai' (installed: anthropic, local, onnx-embed, "
            "openai, scripted); did you mean 'openai'?",
        ),
    ],
)
def test_config_errors_name_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(text)
    assert str(info.value).startswith(expected), str(info.value)
    assert "\n" not in str(info.value)


def test_secret_is_a_reference_resolved_at_use(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(
        "deployments:\n  d:\n    provider: openai\n    model: m\n    base_url: http://x\n"
        '    api_key: {"$env": "MY_KEY"}\n'
    )
    ref = settings.deployments["d"].api_key
    assert ref == SecretRef("MY_KEY")
    assert "MY_KEY" in repr(settings) and "super-secret" not in repr(settings)
    with pytest.raises(ConfigError, match="MY_KEY is not set"):
        ref.resolve()
    monkeypatch.setenv("MY_KEY", "super-secret")
    assert ref.resolve() == "super-secret"
    assert "super-secret" not in settings.model_dump_json()


def test_user_config_merges_over_defaults(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "keel.yaml"
    path.write_text(
        "deployments:\n  up: {provider: openai, model: gpt-4o-mini, base_url: 'http://127.0.0.1:1/v1'}\n"
        "models:\n  fast: {deployments: [up, local]}\n"
    )
    settings = load_settings(path)
    assert settings.models["fast"].deployments == ["up", "local"]
    assert "local" in settings.models  # the defaults are still there


def test_missing_and_non_utf8_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("server: {host: 'caf\xe9'}".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(bad)


def test_env_selects_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("server: {port: 9999}\n")
    monkeypatch.setenv("KEEL_CONFIG", str(path))
    assert load_settings(None).server.port == 9999


def test_the_scripted_fake_is_offered_to_test_processes_only(tmp_path: Path) -> None:
    """A production process (which never imports keel.testing) neither lists nor accepts the fake."""
    import os
    import subprocess
    import sys

    config = tmp_path / "keel.yaml"
    config.write_text("deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n")
    env = {k: v for k, v in os.environ.items() if k != "KEEL_TESTING"} | {"KEEL_HOME": str(tmp_path)}
    run = [sys.executable, "-m", "keel", "models", "-c", str(config)]
    production = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert production.returncode == 2 and "unknown provider 'scripted'" in production.stderr
    assert (
        "installed: anthropic, local, onnx-embed, openai)" in production.stderr
        and "test kit's fake" in production.stderr
    )
    testing = subprocess.run(
        run, env={**env, "KEEL_TESTING": "1"}, capture_output=True, text=True, timeout=60, check=False
    )
    assert testing.returncode == 0, testing.stderr
