"""Eval suites end to end: the CLI as CI runs it, with the scripted model (it echoes the prompt)."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from keel.errors import ConfigError
from keel.evals.suite import load_suite
from tests.cli.test_cli import SCRIPTED, keel

SUITE = """\
feature: hello
checks: [{type: not-refusal}]
cases:
  - id: ada
    inputs: {name: Ada}
    checks: [{type: contains, value: Hello Ada}]
  - id: bo
    inputs: {name: Bo}
    checks: [{type: icontains, value: "hello bo"}, {type: latency, max_ms: 60000}]
gate: {min_pass_rate: 1.0, max_pass_rate_drop: 0.0}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for folder in ("features", "prompts", "evals"):
        (tmp_path / folder).mkdir()
    (tmp_path / "prompts" / "hello.md").write_text("---\ninputs:\n  name: {type: str}\n---\nHello {{ name }}")
    (tmp_path / "features" / "hello.yaml").write_text("prompt: hello\nmodel: fast\n")
    (tmp_path / "evals" / "hello.yaml").write_text(SUITE)
    (tmp_path / "keel.yaml").write_text(SCRIPTED)
    return tmp_path


def run_eval(project: Path, *args: str):  # type: ignore[no-untyped-def]
    return keel(project, "eval", "hello", "--root", str(project), "-c", str(project / "keel.yaml"), *args)


def test_exit_codes_ci_can_trust(project: Path) -> None:
    passed = run_eval(project, "--label", "main", "--junit", str(project / "out.xml"))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "2/2 passed" in passed.stdout and "gate passed (exit 0)" in passed.stdout
    xml = ET.parse(project / "out.xml").getroot()
    assert xml.tag == "testsuites" and xml.get("tests") == "3" and xml.get("failures") == "0"  # 2 cases + the gate
    assert [c.get("name") for c in xml.iter("testcase")] == ["ada", "bo", "gate"]
    # a regression: one case now fails its check → the gate fails with 100, against the labelled baseline
    (project / "evals" / "hello.yaml").write_text(SUITE.replace("value: Hello Ada", "value: Goodbye Ada"))
    failed = run_eval(project, "--baseline", "main", "--json", "--html", str(project / "report.html"))
    assert failed.returncode == 100, failed.stderr
    data = json.loads(failed.stdout)
    assert data["run"]["summary"]["pass_rate"] == 0.5
    gate = {r["name"]: r["passed"] for r in data["gate"]}
    assert gate["pass rate"] is False and gate["pass rate vs baseline"] is False
    change = {d["metric"]: d for d in data["deltas"]}["pass rate"]
    assert change["change"] == -0.5 and change["cases"] == 2 and change["low"] <= -0.5 <= change["high"]
    case = next(r for r in data["run"]["results"] if r["case_id"] == "ada")
    html = (project / "report.html").read_text()
    assert "<svg" in html and "Goodbye Ada" in html and "gate" in html and "<script" not in html
    assert ("pass rate vs baseline" in html and "within noise" in html) or "beyond noise" in html
    assert "does not contain 'Goodbye Ada'" in case["checks"][1]["reason"]
    # the model is unreachable: errors are values, the run completes, and the exit code is 1
    (project / "keel.yaml").write_text(
        "deployments:\n  d: {provider: openai, model: m, base_url: 'http://127.0.0.1:9/v1'}\n"
        "models:\n  fast: {deployments: [d], retry: {attempts: 1}}\n"
    )
    broken = run_eval(project)
    assert broken.returncode == 1 and "2 error(s)" in broken.stdout, broken.stdout + broken.stderr


def test_bad_suites_are_errors_with_exit_1(project: Path) -> None:
    missing = run_eval(project, "--baseline", "nope")
    assert missing.returncode == 1 and "no baseline run 'nope'" in missing.stdout
    (project / "evals" / "hello.yaml").write_text(SUITE.replace("feature: hello", "feature: ghost"))
    ghost = run_eval(project)
    assert ghost.returncode == 1 and "no feature 'ghost'" in ghost.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("feature: hello\ncases: []\n", "at least one case"),
        ("feature: hello\ncases:\n  - {id: a, checks: [contains]}\n  - {id: a, checks: [is-json]}\n", "used twice"),
        ("feature: hello\ncases:\n  - {id: a}\n", "case 'a' has no checks"),
        ("feature: hello\ncases:\n  - {id: a, checks: [{type: contians}]}\n", "did you mean 'contains'"),
        ("feature: hello\ncases:\n  - {id: a, checks: [is-json]}\ngate: {min_pass_rate: 2}\n", "gate.min_pass_rate"),
        ("feature: hello\ncases:\n  - {id: a, colour: red, checks: [is-json]}\n", "unknown key"),
        ("feature: hello\ncases:\n  - {id: 'a b', checks: [is-json]}\n", "a case id is"),
    ],
)
def test_suite_errors_name_the_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_suite(path)
    assert "s.yaml:" in info.value.message


def test_suites_run_as_pytest_tests(project: Path) -> None:
    import os
    import subprocess
    import sys

    (project / "evals" / "hello.yaml").write_text(SUITE.replace("value: Hello Ada", "value: Goodbye Ada"))
    env = {**os.environ, "KEEL_HOME": str(project / "home"), "KEEL_CONFIG": str(project / "keel.yaml")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--keel-evals", "-p", "no:cacheprovider", "-q", "-o", "addopts=",
         "--rootdir", str(project), str(project / "evals")],
        capture_output=True, text=True, env=env, cwd=project, timeout=120, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "2 failed, 1 passed" in out  # case ada fails, case bo passes, the gate fails
    assert "does not contain 'Goodbye Ada'" in out and "gate failed" in out


def test_matrix_compares_prompt_versions_side_by_side(project: Path) -> None:
    first = run_eval(project, "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    again = run_eval(project)
    assert "2 replayed from the cache, paid $0" in again.stdout, again.stdout
    prompt = project / "prompts" / "hello.md"
    prompt.write_text(prompt.read_text().replace("Hello {{ name }}", "Goodbye {{ name }}"))
    keel(project, "prompts", "sync", "--dir", str(project / "prompts"), "-c", str(project / "keel.yaml"))
    out = run_eval(project, "--prompt-versions", "1,2", "--models", "fast", "--json", "--junit", str(project / "m.xml"),
                   "--html", str(project / "m.html"))  # fmt: skip
    assert out.returncode == 100, out.stdout + out.stderr  # v2 says Goodbye: its gate fails
    data = json.loads(out.stdout)
    rates = {m["run"]["summary"]["variant"]: m["run"]["summary"]["pass_rate"] for m in data["matrix"]}
    assert rates == {"v1 · fast": 1.0, "v2 · fast": 0.0}
    change = next(d for d in data["comparison"][1] if d["metric"] == "pass rate")
    assert change["change"] == -1.0
    suites = ET.parse(project / "m.xml").getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["keel.hello[v1 · fast]", "keel.hello[v2 · fast]"]
    html = (project / "m.html").read_text()
    assert "<h2>Matrix</h2>" in html and "v2 · fast" in html
    table = run_eval(project, "--prompt-versions", "1,2", "--no-cache")
    assert "matrix" in table.stdout and "-100%" in table.stdout, table.stdout
    bad = run_eval(project, "--prompt-versions", "one")
    assert bad.returncode == 1 and "--prompt-versions takes version numbers" in bad.stdout
    ghost = run_eval(project, "--models", "fast,ghost")
    assert ghost.returncode == 1 and "ghost" in ghost.stdout
    labelled = run_eval(project, "--prompt-versions", "1,2", "--label", "main")
    assert labelled.returncode == 1 and "--label names one run" in labelled.stdout


def test_ctrl_c_keeps_the_finished_cases_and_marks_the_run_partial(project: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from keel.store import connect, db_path
    from keel.testing import Fault, FaultServer

    cases = "".join(f"  - id: c{i}\n    inputs: {{name: N{i}}}\n    checks: [{{type: icontains, value: n{i}}}]\n"
                    for i in range(6))  # fmt: skip
    (project / "evals" / "hello.yaml").write_text(f"feature: hello\ncases:\n{cases}")
    with FaultServer() as upstream:
        upstream.inject(Fault.stall(0), Fault.stall(0), *[Fault.stall(60)] * 4)  # two answer, then it hangs
        (project / "keel.yaml").write_text(
            f"deployments:\n  d: {{provider: openai, model: gpt-4o-mini, base_url: '{upstream.base_url}'}}\n"
            "models:\n  fast: {deployments: [d]}\n"
        )
        env = {**os.environ, "KEEL_HOME": str(project), "COLUMNS": "200"}
        env.pop("KEEL_CONFIG", None)
        # a child inherits an ignored SIGINT across exec (POSIX); something earlier in a full test
        # session leaves this process ignoring it, so the child is given a terminal's disposition
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        proc = subprocess.Popen(
            [sys.executable, "-m", "keel", "eval", "hello", "--root", str(project), "-c", str(project / "keel.yaml"),
             "--concurrency", "1", "--label", "main"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        signal.signal(signal.SIGINT, previous)
        deadline = time.monotonic() + 60
        while upstream.chat_calls < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert upstream.chat_calls >= 3, "the third case never started"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10, "Ctrl-C must not wait for the hanging call"
    assert proc.returncode == 1, out + err
    assert "2/2 passed" in out and "PARTIAL" in out and "interrupted: 2 of 6 cases ran" in out, out
    conn = connect(db_path(project))
    row = conn.execute("SELECT id, status, label FROM eval_runs").fetchone()
    assert row["status"] == "partial" and row["label"] is None  # a partial run is never a baseline
    stored = conn.execute("SELECT count(*) FROM eval_results WHERE run_id = ?", (row["id"],)).fetchone()[0]
    assert stored == 2
