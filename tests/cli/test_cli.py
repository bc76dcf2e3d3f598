"""The CLI as a user runs it: a subprocess, real files, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTED = "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  fast: {deployments: [d]}\n"


def keel(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "KEEL_HOME": str(home), "COLUMNS": "200", **(env or {})}
    full_env.pop("KEEL_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def test_keys_lifecycle(tmp_path: Path) -> None:
    created = keel(tmp_path, "keys", "create", "--tenant", "acme", "--name", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.split()[0]
    assert key.startswith("keel-") and "not shown again" in created.stdout
    listed = keel(tmp_path, "keys", "list")
    assert "acme" in listed.stdout and key not in listed.stdout and "active" in listed.stdout
    key_id = listed.stdout.split("\n")[3].split()[1]
    assert keel(tmp_path, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in keel(tmp_path, "keys", "list").stdout
    again = keel(tmp_path, "keys", "revoke", key_id)
    assert again.returncode == 2 and again.stderr.strip().startswith("error: no active key")


def test_chat_then_traces_and_cost(tmp_path: Path) -> None:
    config = tmp_path / "keel.yaml"
    config.write_text(SCRIPTED)
    chat = keel(tmp_path, "chat", "hello from the cli", "-m", "fast", "-c", str(config))
    assert chat.returncode == 0, chat.stderr
    assert "echo: hello from the cli" in chat.stdout and "trace" in chat.stdout
    lines = keel(tmp_path, "traces", "list", "--json", "-c", str(config)).stdout.strip().splitlines()
    record = json.loads(lines[0])
    assert record["alias"] == "fast" and record["tenant"] == "default" and record["output_tokens"] == 5
    shown = keel(tmp_path, "traces", "show", record["id"][:10], "-c", str(config))
    assert shown.returncode == 0 and "attempts" in shown.stdout and "price table" in shown.stdout
    cost = keel(tmp_path, "cost", "--by", "model,tenant", "--since", "1d", "-c", str(config))
    assert cost.returncode == 0 and "gpt-4o-mini" in cost.stdout and "total" in cost.stdout
    tail = keel(tmp_path, "traces", "list", "--status", "error", "-c", str(config))
    assert "no traces yet" in tail.stdout
    narrow = keel(tmp_path, "traces", "list", "-c", str(config), env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80 and "…" not in narrow  # fits, nothing cut
    assert "when (UTC)" in narrow and "tokens" in narrow and "fast" in narrow and record["id"][:8] in narrow
    wide = keel(tmp_path, "traces", "list", "--wide", "-c", str(config), env={"COLUMNS": "160"}).stdout
    assert "deployment" in wide and "tenant" in wide


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["models"], "server:\n  prot: 1\n", "keel.yaml:2: server.prot: unknown key"),
        (["models"], "models: [\n", "invalid YAML"),
        (["chat", "hi", "-m", "nope"], SCRIPTED, "The model 'nope' does not exist"),
        (["chat", "   "], SCRIPTED, "the prompt is empty"),
        (["cost", "--since", "last tuesday"], SCRIPTED, "--since takes a span"),
        (["traces", "show", "abc"], SCRIPTED, "at least 6 characters"),
        (["traces", "show", "abcdef123"], SCRIPTED, "no trace 'abcdef123'"),
    ],
)
def test_errors_are_one_line_without_a_traceback(tmp_path: Path, args: list[str], config: str, message: str) -> None:
    path = tmp_path / "keel.yaml"
    path.write_text(config)
    result = keel(tmp_path, *args, "-c", str(path))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_usage_errors_and_help(tmp_path: Path) -> None:
    bad = keel(tmp_path, "chat")
    assert bad.returncode == 2 and "Missing argument" in bad.stderr and "Traceback" not in bad.stderr
    for command in ("serve", "chat", "models", "cost", "demo", "keys", "traces"):
        helped = keel(tmp_path, command, "--help")
        assert helped.returncode == 0 and "Usage" in helped.stdout


def test_models_table(tmp_path: Path) -> None:
    out = keel(tmp_path, "models").stdout
    assert "local" in out and "qwen2.5-coder-0.5b-instruct" in out and "all-minilm-l6-v2" in out


def test_demo_runs_the_main_job_on_a_real_local_model(tmp_path: Path) -> None:
    small = {"KEEL_LOCAL_MODEL": "smollm2-135m-instruct"}
    result = keel(tmp_path, "demo", "--question", "How long do card refunds take?", env=small)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "33 indexed" in out and "A:" in out and "trace id" in out and "local model (no charge)" in out
    assert "billing/refunds.md" in out  # retrieval found the refunds page among 33
    assert "support_answer · prompt support_answer v1" in out and "smollm2-135m-instruct" in out
    again = keel(tmp_path, "demo", "--question", "What is the rate limit on the Team plan?", env=small)
    assert again.returncode == 0 and "33 unchanged" in again.stdout and "api/rate-limits.md" in again.stdout


def test_prompts_commands(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "support.md").write_text("---\ndescription: Support answers\n---\nAnswer: {{ question }}\n")
    d = ["--dir", str(prompts)]
    assert "support: v1" in keel(tmp_path, "prompts", "sync", *d).stdout
    (prompts / "support.md").write_text("---\ndescription: Support answers\n---\nAnswer briefly: {{ question }}\n")
    assert "support: v2" in keel(tmp_path, "prompts", "sync", *d).stdout
    listed = keel(tmp_path, "prompts", "list", *d).stdout
    assert "support" in listed and "production→v1" in listed
    assert keel(tmp_path, "prompts", "label", "support", "production", "2", *d).returncode == 0
    diff = keel(tmp_path, "prompts", "diff", "support", "1", "2", *d).stdout
    assert "-Answer: {{ question }}" in diff and "+Answer briefly: {{ question }}" in diff
    assert "v2 → v1" in keel(tmp_path, "prompts", "rollback", "support", *d).stdout
    assert "Answer: {{ question }}" in keel(tmp_path, "prompts", "show", "support", *d).stdout
    history = keel(tmp_path, "prompts", "history", "support", *d).stdout
    assert "rollback from v2" in history and "first version" in history
    bad = keel(tmp_path, "prompts", "label", "support", "production", "7", *d)
    assert bad.returncode == 2 and "no version 7" in bad.stderr
    (prompts / "broken.md").write_text("---\ncolour: red\n---\nhi\n")
    broken = keel(tmp_path, "prompts", "sync", *d)
    assert broken.returncode == 2 and "broken.md:2: colour: unknown key" in broken.stderr


def test_run_a_feature(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "hello.md").write_text(
        "---\ninputs:\n  name: {type: str}\n  n: {type: int}\n---\nHello {{ name }} x{{ n }}"
    )
    (tmp_path / "features" / "hello.yaml").write_text("prompt: hello\nmodel: fast\n")
    config = tmp_path / "keel.yaml"
    config.write_text(SCRIPTED)
    args = ["run", "hello", "-i", "name=Ada", "-i", "n=3", "--root", str(tmp_path), "-c", str(config)]
    result = keel(tmp_path, *args, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["answer"] == "echo: Hello Ada x3" and data["prompt_version"] == 1 and data["trace_id"]
    human = keel(tmp_path, *args, "--user", "u1")
    assert "echo: Hello Ada x3" in human.stdout and "prompt v1" in human.stdout
    bad = keel(tmp_path, "run", "hello", "-i", "name", "--root", str(tmp_path), "-c", str(config))
    assert bad.returncode == 2 and "--input takes NAME=VALUE" in bad.stderr
    wrong = keel(
        tmp_path, "run", "hello", "-i", "name=Ada", "-i", "n=three", "--root", str(tmp_path), "-c", str(config)
    )
    assert wrong.returncode == 2 and "input 'n' must be int, not str" in wrong.stderr
    streamed = keel(tmp_path, *args, "--stream", "--json")
    kinds = [json.loads(line)["type"] for line in streamed.stdout.splitlines()]
    assert kinds[0] == "started" and kinds[-1] == "done" and "delta" in kinds
    live = keel(tmp_path, *args, "--stream")
    assert live.returncode == 0 and "echo: Hello Ada x3" in live.stdout and "trace" in live.stdout


def test_experiments_commands(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    (tmp_path / "prompts").mkdir()
    prompt = tmp_path / "prompts" / "hello.md"
    prompt.write_text("---\ninputs:\n  name: {type: str}\n---\nHello {{ name }}")
    (tmp_path / "features" / "hello.yaml").write_text("prompt: hello\nmodel: fast\n")
    config = tmp_path / "keel.yaml"
    config.write_text(SCRIPTED)
    common = ["--root", str(tmp_path), "-c", str(config)]
    assert keel(tmp_path, "prompts", "sync", "--dir", str(tmp_path / "prompts")).returncode == 0
    prompt.write_text("---\ninputs:\n  name: {type: str}\n---\nHi {{ name }}")
    start = keel(
        tmp_path, "experiments", "start", "greeting", "-f", "hello", "--arm", "control:version=1", "--arm",
        "hi:version=2", *common,
    )  # fmt: skip
    assert start.returncode == 0, start.stderr
    assert "control: 50% — prompt v1" in start.stdout and "hi: 50% — prompt v2" in start.stdout
    arms = set()
    for n in range(6):
        out = keel(tmp_path, "run", "hello", "-i", "name=Ada", "--user", f"u{n}", "--json", *common)
        data = json.loads(out.stdout)
        arms.add((data["arm"], data["answer"]))
    assert arms <= {("control", "echo: Hello Ada"), ("hi", "echo: Hi Ada")} and len(arms) == 2
    fb = keel(tmp_path, "feedback", data["trace_id"][:10], "helpful", "true", "--comment", "nice", "-c", str(config))
    assert fb.returncode == 0 and "helpful = 1" in fb.stdout, fb.stderr
    shown = keel(tmp_path, "traces", "show", data["trace_id"], "-c", str(config)).stdout
    assert "feature run" in shown and "prompt hello v" in shown and "helpful" in shown and "nice" in shown
    assert "feature hello" in shown and "chat fast → " in shown and "attempt " in shown  # its calls as a tree
    report = keel(tmp_path, "experiments", "report", "greeting", "-c", str(config))
    assert report.returncode == 0 and "too few runs yet" in report.stdout and "p95 ms" in report.stdout
    assert "greeting" in keel(tmp_path, "experiments", "list", "-c", str(config)).stdout
    refused = keel(tmp_path, "experiments", "stop", "greeting", "--promote", "winner", *common)
    assert refused.returncode == 2 and "no significant winner" in refused.stderr
    stop = keel(tmp_path, "experiments", "stop", "greeting", "--promote", "hi", *common)
    assert stop.returncode == 0 and "'production' of prompt 'hello' → v2" in stop.stdout
    bad = keel(tmp_path, "experiments", "start", "x", "-f", "hello", "--arm", "a", "--arm", "b:version=9", *common)
    assert bad.returncode == 2 and "no version 9" in bad.stderr
