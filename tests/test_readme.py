"""Docs that execute: the README's examples run, its config parses, its commands exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keel.config import load_settings
from keel.server import build_app
from tests.conftest import RunningServer, make_settings, new_key

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def block(marker: str) -> str:
    match = re.search(rf"<!-- readme-test: {marker} -->\n```python\n(.*?)```", README, re.S)
    assert match, f"README block {marker} is missing"
    return match.group(1)


def test_the_sdk_example_runs_against_a_live_gateway(home: Path) -> None:
    settings = make_settings(
        "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\n"
        "  e: {provider: scripted, model: text-embedding-3-small}\n"
        "models:\n  fast: {deployments: [d]}\n  all-minilm-l6-v2: {deployments: [e]}\n"
    )
    app = build_app(settings, home)
    key, _ = new_key(home, "readme")
    with RunningServer(app) as server:
        env = {**os.environ, "KEEL_URL": server.base_url, "KEEL_API_KEY": key}
        result = subprocess.run(
            [sys.executable, "-c", block("sdk")], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert result.returncode == 0, result.stderr
    assert "echo: Summarise our refund policy in one line." in result.stdout
    assert "trace:" in result.stdout and "cost: 0.0000" in result.stdout
    assert "echo: Stream, please." in result.stdout and result.stdout.strip().endswith("16")


def test_the_example_config_is_valid(home: Path) -> None:
    settings = load_settings(ROOT / "examples" / "keel.yaml")
    assert settings.models["fast"].deployments == ["openai-mini", "claude", "local"]
    assert settings.deployments["openai-mini"].api_key is not None
    assert settings.review.queues["support"].webhook == "https://hooks.example.com/keel-review"


@pytest.mark.parametrize("command", sorted(set(re.findall(r"^keel ([a-z]+)", README, re.M))))
def test_every_command_in_the_readme_exists(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "keel", command, "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_two_commands_are_the_makefile_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in README and "make test" in README
    assert re.search(r"^demo: install", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def yaml_block(marker: str) -> str:
    match = re.search(rf"<!-- readme-test: {marker} -->\n```yaml\n(.*?)```", README, re.S)
    assert match, f"README block {marker} is missing"
    return match.group(1)


def test_the_readme_suite_loads_with_its_checks(tmp_path: Path) -> None:
    from keel.evals.suite import load_suite

    path = tmp_path / "evals" / "support_answer.yaml"
    path.parent.mkdir()
    path.write_text(yaml_block("suite"))
    suite = load_suite(path)
    checks = [c.name for c in suite.checks["refund-timing"]]
    assert checks == ["not-refusal", "grounded", "icontains", "recall@k", "llm-rubric"]
    assert suite.checks["refund-timing"][-1].requires_llm and suite.spec.gate.min_check_score == {"grounded": 0.8}


def test_the_readme_score_configs_parse() -> None:
    settings = make_settings(yaml_block("scores"))
    assert settings.feedback.scores["rating"].low_below == 3
    assert settings.feedback.scores["reason"].low == ["wrong", "incomplete"]


def test_the_readme_budgets_parse() -> None:
    settings = make_settings(yaml_block("budgets").replace("{$env: REDIS_URL}", "x"))
    assert settings.budgets["user-daily"].per == "user" and settings.limits["per-key"].tpm == 200000
    assert settings.budgets["support-soft"].mode == "soft"


def test_the_readme_cache_and_route_spec_parses(tmp_path: Path) -> None:
    from keel.features.spec import load_feature

    (tmp_path / "features").mkdir()
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "support_answer.md").write_text(
        "---\ninputs:\n  question: {type: str}\n---\n{{ question }}"
    )
    (tmp_path / "features" / "support_answer.yaml").write_text(yaml_block("cache"))
    spec = load_feature(tmp_path, "support_answer")
    assert spec.cache is not None and spec.cache.semantic is not None and spec.cache.semantic.threshold == 0.85
    assert spec.route is not None and [c.name for c in spec.route.checks()] == ["says-dont-know", "not-citations-valid"]


def test_the_readme_data_policy_parses() -> None:
    settings = make_settings(yaml_block("policy"))
    assert (
        settings.data_policy.allow["openai-mini"] == ["EMAIL", "PERSON"]
        and settings.data_policy.on_violation == "redact"
    )


def test_the_readme_actions_parse() -> None:
    import yaml

    from keel.features.spec import ActionSpec

    actions = {k: ActionSpec.model_validate(v) for k, v in yaml.safe_load(yaml_block("actions"))["actions"].items()}
    assert actions["refund"].rules[0].max == 100 and actions["refund"].fallback["action"] == "escalate"


def test_the_readme_scale_out_config_parses_and_points_everything_at_postgres() -> None:
    settings = make_settings(yaml_block("scale-out"))
    assert settings.store.backend == "postgres" and settings.store.url is not None
    assert settings.store.url.env == "KEEL_PG_URL" and settings.store.retention_days == 90
    assert settings.retrieval_backend == "postgres" and settings.retrieval_url == settings.store.url
    assert settings.ledger.backend == "redis"


def test_the_readme_review_spec_parses_with_its_condition() -> None:
    from keel.config.yamlfile import parse_yaml
    from keel.features.result import FeatureResult
    from keel.features.reviewing import run_values
    from keel.features.spec import parse_feature

    spec = parse_feature(parse_yaml(yaml_block("review"), "features/support_answer.yaml"), "support_answer")
    assert spec.review is not None and spec.review.mode == "hold" and spec.review.queue == "support"
    condition = spec.review.condition({"grounded", "citations"})
    assert condition is not None
    low = FeatureResult("support_answer", "x", confidence=0.4)
    assert condition(run_values(low)) and not condition(
        run_values(FeatureResult("support_answer", "x", confidence=0.9))
    )


def test_the_readme_monitors_parse(tmp_path: Path) -> None:
    from keel.config.yamlfile import parse_yaml
    from keel.features.spec import parse_feature

    text = "prompt: support_answer\n" + yaml_block("monitors")
    spec = parse_feature(parse_yaml(text, "features/support_answer.yaml"), "support_answer")
    watch = spec.monitors["quality"]
    assert watch.sample == 0.1 and watch.window_s == 3600 and watch.ref.kind == "span"
    assert [c.name for c in watch.bound_checks()] == ["grounded", "not-refusal", "llm-rubric"]
    assert watch.alert.webhook == "https://hooks.example.com/keel" and watch.alert.on == ["drop", "drift"]


def test_the_readme_gateway_monitors_parse() -> None:
    from keel.config import settings_from_yaml
    from keel.config.yamlfile import parse_yaml

    models = "deployments:\n  d: {provider: openai, model: gpt-4o-mini}\nmodels:\n  fast: {deployments: [d]}\n"
    models += "  accurate: {deployments: [d]}\n"
    settings = settings_from_yaml(parse_yaml(models + yaml_block("gateway-monitors"), "keel.yaml"))
    assert settings.monitors["raw_chat"].models == ["fast", "accurate"] and settings.monitors["raw_chat"].window == "1h"


def test_no_internal_project_wording_reaches_users() -> None:
    """Users read the README, the package's messages and docstrings: no "the review issue", no "issue 6"."""
    wording = re.compile(r"\bissues? [0-9]+\b|\bthe [a-z-]+ issue\b", re.I)
    texts = {"README.md": README, "bench/README.md": (ROOT / "bench" / "README.md").read_text()}
    for path in (ROOT / "src" / "keel").rglob("*"):
        if path.suffix in (".py", ".html", ".md", ".yaml"):
            texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    found = [f"{name}: {m.group(0)}" for name, text in texts.items() for m in wording.finditer(text)]
    assert not found, found
