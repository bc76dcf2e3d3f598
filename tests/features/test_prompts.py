from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

import pytest

from keel.errors import ConfigError, UserError
from keel.features.prompts import PromptRegistry
from keel.features.templates import parse_prompt, render
from keel.store import Store

PROMPT = """---
description: Answer a support question
model: accurate
params: {temperature: 0.2, max_tokens: 300}
inputs:
  question: {type: str}
  tone: {type: str, required: false, default: friendly}
  limit: {type: int, required: false, default: 3}
---
[system]
You are Acme support. Be {{ tone }}. Cite at most {{ limit }} sources.
[user]
{{ question }}
"""


def test_render_messages_params_and_defaults() -> None:
    prompt = parse_prompt(PROMPT, "support")
    out = render(prompt, {"question": "How do I rotate a key?"})
    assert out.messages == [
        {"role": "system", "content": "You are Acme support. Be friendly. Cite at most 3 sources."},
        {"role": "user", "content": "How do I rotate a key?"},
    ]
    assert out.params == {"temperature": 0.2, "max_tokens": 300} and out.model == "accurate"
    assert render(parse_prompt("Hello {{ name }}", "plain"), {"name": "Ada"}).messages == [
        {"role": "user", "content": "Hello Ada"}
    ]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({}, "missing input 'question' (str)"),
        ({"question": "q", "colour": "red"}, "unknown input(s) colour"),
        ({"question": 42}, "input 'question' must be str, not int"),
        ({"question": "q", "limit": True}, "input 'limit' must be int, not bool"),
    ],
)
def test_input_mistakes_name_the_input(variables: dict, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        render(parse_prompt(PROMPT, "support"), variables)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\ndescription: x\n", "support.md:1: the front matter starting with '---' is never closed"),
        ("---\ninputs:\n  q: {type: text}\n---\n{{ q }}", "support.md:3: inputs.q.type"),
        ("---\ncolour: red\n---\nhi", "support.md:2: colour: unknown key"),
        ("---\ndescription: x\n---\nHello {{ name ", "support.md:4: template syntax error"),
    ],
)
def test_bad_prompt_files_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_prompt(text, "support", "prompts/support.md")


def test_undeclared_variables_fail_loudly() -> None:
    with pytest.raises(UserError, match="'name' is undefined"):
        render(parse_prompt("Hello {{ name }}", "plain"), {})


def test_the_sandbox_refuses_python_internals() -> None:
    with pytest.raises(UserError):
        render(parse_prompt("{{ ''.__class__.__mro__[1].__subclasses__() }}", "evil"), {})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return prompts


def commit(repo: Path, name: str, text: str, message: str) -> None:
    (repo / f"{name}.md").write_text(text)
    env = {
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(["git", "add", "-A"], cwd=repo.parent, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", message], cwd=repo.parent, check=True, env=env)


def test_versions_labels_rollback_and_history(repo: Path, tmp_path: Path) -> None:
    registry = PromptRegistry(Store.at(tmp_path / "k.db").prompts, repo)
    commit(repo, "support", PROMPT, "first")
    assert registry.sync() == {"support": 1}
    assert registry.sync() == {"support": 1}  # same content, same version
    commit(repo, "support", PROMPT.replace("Be {{ tone }}.", "Be {{ tone }} and brief."), "second")
    assert registry.sync() == {"support": 2}
    versions = registry.versions("support")
    assert [v.version for v in versions] == [1, 2] and versions[0].labels == ("production",)
    assert versions[1].git_author == "Ada" and versions[1].git_commit and len(versions[1].git_commit) == 40
    assert registry.render("support", {"question": "q"}).version == 1  # production stays until moved
    registry.set_label("support", "production", 2)
    registry.set_label("support", "staging", 1)
    assert registry.render("support", {"question": "q"}).version == 2
    assert registry.rollback("support") == (2, 1)
    assert registry.render("support", {"question": "q"}).version == 1
    history = registry.history("support")
    assert history[0]["who"] == "git:Ada" and history[1]["who"].startswith("os:")  # who moved it (issue 21)
    moves = [(m["label"], m["from"], m["to"], m["reason"]) for m in history]
    assert moves == [
        ("production", None, 1, "first version"),
        ("production", 1, 2, "set by hand"),
        ("staging", None, 1, "set by hand"),
        ("production", 2, 1, "rollback from v2"),
    ]
    with pytest.raises(UserError, match="nothing to roll back"):
        registry.rollback("support", "staging")
    with pytest.raises(UserError, match="no label 'canary'"):
        registry.render("support", {"question": "q"}, label="canary")
    with pytest.raises(UserError, match="no version 9"):
        registry.set_label("support", "production", 9)
    with pytest.raises(UserError, match="no prompt 'ghost'"):
        registry.versions("ghost")


def test_a_version_that_fails_to_render_falls_back_to_the_last_good(repo: Path, tmp_path: Path) -> None:
    registry = PromptRegistry(Store.at(tmp_path / "k.db").prompts, repo)
    commit(repo, "support", PROMPT, "good")
    registry.sync()
    commit(repo, "support", PROMPT.replace("{{ question }}", "{{ question }} {{ 1 / 0 }}"), "broken")
    registry.sync()
    registry.set_label("support", "production", 2)
    out = registry.render("support", {"question": "q"})
    assert out.version == 1 and out.fallback_reason and "v2 failed to render" in out.fallback_reason
    with pytest.raises(UserError, match="missing input"):  # the caller's mistake is not papered over
        registry.render("support", {})


def test_concurrent_label_moves_serialise(repo: Path, tmp_path: Path) -> None:
    commit(repo, "support", PROMPT, "v1")
    PromptRegistry(Store.at(tmp_path / "k.db").prompts, repo).sync()
    for i in range(2, 6):
        commit(repo, "support", PROMPT + f"\n{{# v{i} #}}", f"v{i}")
        PromptRegistry(Store.at(tmp_path / "k.db").prompts, repo).sync()
    errors: list[BaseException] = []

    def move(version: int) -> None:
        try:
            for _ in range(10):
                PromptRegistry(Store.at(tmp_path / "k.db").prompts, repo).set_label("support", "production", version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(v,)) for v in (2, 3, 4, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    registry = PromptRegistry(Store.at(tmp_path / "k.db").prompts, repo)
    history = registry.history("support")
    assert len(history) == 41
    assert all(history[i]["to"] == history[i + 1]["from"] for i in range(1, len(history) - 1))  # no lost move
    assert registry.label_version("support") == history[-1]["to"]
