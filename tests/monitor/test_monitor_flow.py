"""Live runs to alerts, through the real parts: a feature with ``monitors:`` runs on the scripted
provider; sampled runs queue ``monitor`` jobs that a worker's job function scores; the sweeper
reads the traces, compares the window with the hour before, and opens one alert naming what moved
and the prompt version that began serving; an evaluator that errors on every run is an evaluator
alert, not a drop; ``keel monitor status`` prints the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from keel.config.settings import KeelSettings
from keel.features.prompts import local_actor
from keel.monitor.scoring import KIND, monitor_work
from keel.monitor.sweeper import Monitors
from keel.review import ReviewQueue
from keel.store import Store
from tests.cli.test_cli import keel

QUESTIONS = [f"How long do refunds take for order {i}?" for i in range(60)]
GOOD = "Refunds take five business days [1]."
BAD = "I'm sorry, I can't help with that."
CONFIG = "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"


def _feature(project: Path, checks: str = "[not-refusal]") -> None:
    (project / "features" / "watched.yaml").write_text(
        "prompt: support\nmodel: m\nretrieval: {collection: handbook, top_k: 3, min_score: 0.2}\n"
        "guards: {output: [citations]}\n"
        f"monitors:\n  quality:\n    sample: 1\n    checks: {checks}\n    window: 1h\n    reference: 1h\n"
        "    judge_model: m\n"
        "    alert: {min_samples: 30}\n"
    )


async def _traffic(pipe: Any, provider: Any, answers: list[str]) -> None:
    for question, answer in zip(QUESTIONS[: len(answers)], answers, strict=True):
        provider.enqueue(answer)
        await pipe.run("watched", {"question": question})
    assert pipe.service.writer.flush(5.0)


async def _score(store: Store, pipe: Any) -> int:
    """What a worker does with the queued monitor jobs."""
    work, done = monitor_work(pipe), 0
    while (job := store.jobs.claim("w1", 60, kinds=[KIND])) is not None:
        result, cost = await work(job)
        store.jobs.succeed(job, result, cost_usd=cost)
        done += 1
    return done


def _age(store: Store, seconds: float) -> None:
    """An hour passes: every row so far moves back (what the test does instead of waiting)."""
    for table in ("traces", "monitor_runs", "monitor_scores", "monitor_inputs"):
        store.db.run(f"UPDATE {table} SET ts = ts - ?", (seconds,))
    store.db.run("UPDATE label_moves SET at = at - ?", (seconds,))
    store.monitors.advance("traces", (store.monitors.cursor("traces") or 0) - seconds)


async def test_a_prompt_change_that_makes_refusals_is_alerted_with_its_version(
    pipeline: Any, project: Path, home: Path
) -> None:
    pipe, provider, _ = pipeline
    _feature(project)
    store: Store = pipe.store
    await _traffic(pipe, provider, [GOOD] * 60)
    assert await _score(store, pipe) == 60  # sample: 1 — every run was queued and scored off the path
    monitors = Monitors(store, KeelSettings(), project)
    assert monitors.read_traces() == 60
    _age(store, 3600)
    prompt = project / "prompts" / "support.md"
    prompt.write_text(prompt.read_text() + "\nBe brief.")
    assert pipe.registry.record_file(prompt) == 2
    store.prompts.move("support", "production", 2, "try a briefer prompt", local_actor())
    await _traffic(pipe, provider, [GOOD] * 30 + [BAD] * 30)
    await _score(store, pipe)
    read, found = monitors.sweep()
    assert read == 120  # the new hour, and the ten minutes re-read before the cursor (kept once)
    status = next(s for s in found if s.feature == "watched")
    verdicts = {v.signal.name: v for v in status.verdicts}
    assert verdicts["check:not-refusal"].verdict == "drop"
    assert verdicts["check:not-refusal"].reference == 1.0 and verdicts["check:not-refusal"].current == 0.5
    assert verdicts["refusal"].verdict == "drop" and verdicts["refusal"].test in ("z", "fisher")
    assert verdicts["latency_ms"].verdict in ("ok", "drift", "improved")  # judged, whatever it is
    assert verdicts["input_embedding"].n == 60  # sampled inputs were embedded for input drift
    assert [c.value for c in status.changes if c.kind == "prompt"] == ["v2"]
    alerts = {a.signal: a for a in store.monitors.open_alerts("default", "watched")}
    assert set(alerts) >= {"quality/check:not-refusal", "quality/refusal"}
    message = alerts["quality/check:not-refusal"].message
    assert message.startswith("watched: not-refusal pass rate 1.00 → 0.50 (−50 pts, p < 0.001, n = 60)")
    assert "since prompt v2 became production at" in message and "; prompt v2 began serving at" in message
    # the same state swept again (another replica): no second alert
    monitors.sweep()
    assert len(store.monitors.open_alerts("default", "watched")) == len(alerts)
    assert monitors.opened == len(alerts)


async def test_an_evaluator_that_always_fails_is_an_evaluator_alert(pipeline: Any, project: Path, home: Path) -> None:
    pipe, provider, _ = pipeline
    _feature(project, checks="[{type: llm-rubric, rubric: 'Says how long refunds take'}]")
    store: Store = pipe.store
    provider.enqueue(*([GOOD] * 60))  # the judge's replies are not verdicts: every rubric call fails
    await _traffic(pipe, provider, [GOOD] * 30)
    await _score(store, pipe)
    errors = store.monitors.scores("default", "watched", 0, 1e12, status="error")
    assert len(errors) == 30 and all(e.reason and "JudgeError" in e.reason for e in errors)
    assert {e.why for e in errors} == {"sampled (100% of runs, by trace id)"}
    _, found = Monitors(store, KeelSettings(), project).sweep()
    status = next(s for s in found if s.feature == "watched")
    assert [e.check for e in status.evaluators if e.failing] == ["llm-rubric"]
    assert "check:llm-rubric" not in {v.signal.name for v in status.verdicts}  # no scores: not a quality drop
    alert = store.monitors.open_alerts("default", "watched")[0]
    assert alert.signal == "quality/evaluator:llm-rubric" and "failed on all 30 sampled runs" in alert.message


@pytest.mark.parametrize("fmt", ["table", "json"])
async def test_keel_monitor_status_prints_signals(pipeline: Any, project: Path, home: Path, fmt: str) -> None:
    pipe, provider, _ = pipeline
    _feature(project)
    await _traffic(pipe, provider, [GOOD] * 60)
    (project / "keel.yaml").write_text(f"project_root: '{project}'\n{CONFIG}")
    args = ["monitor", "status", "watched", "-c", str(project / "keel.yaml")]
    done = keel(home, *args, "--json") if fmt == "json" else keel(home, *args)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    if fmt == "json":
        shown = json.loads(out)[0]
        assert shown["feature"] == "watched" and shown["monitor"] == "quality"
        signals = {s["signal"]: s for s in shown["signals"]}
        assert signals["refusal"]["verdict"] == "no reference" and signals["refusal"]["n"] == 60
        assert any("has no runs" in n for n in shown["notes"])
    else:
        assert "refusal rate" in out and "no reference" in out and "watched · monitor 'quality'" in out


async def test_failed_live_runs_go_to_review_and_become_eval_cases(pipeline: Any, project: Path, home: Path) -> None:
    pipe, provider, _ = pipeline
    (project / "features" / "watched.yaml").write_text(
        "prompt: support\nmodel: m\nretrieval: {collection: handbook, top_k: 3, min_score: 0.2}\n"
        "monitors:\n  quality: {sample: 1, checks: [not-refusal]}\n"
        "review: {when: monitor failed, queue: support}\n"
    )
    store: Store = pipe.store
    queue = ReviewQueue(store, KeelSettings(), project)

    async def to_review(tenant: str, trace_id: str, name: str, why: str) -> None:
        queue.add_trace(trace_id, name, tenant=tenant, reason=why)

    await _traffic(pipe, provider, [GOOD, BAD, GOOD, BAD])
    work = monitor_work(pipe, to_review)
    while (job := store.jobs.claim("w1", 60, kinds=[KIND])) is not None:
        await work(job)
    items = store.reviews.find(tenant="default", queue="support", status="pending")
    assert len(items) == 2 and {i.reason for i in items} == {"monitor 'quality' failed: not-refusal"}
    assert {i.trace_id for i in items} == {s.trace_id for s in store.monitors.scores("default", "watched", 0, 1e12)
                                           if s.passed is False}  # fmt: skip
    (project / "evals").mkdir()
    suite = project / "evals" / "watched.yaml"
    suite.write_text("feature: watched\nchecks: [not-refusal]\ncases:\n  - id: one\n    inputs: {question: hi}\n")
    (project / "keel.yaml").write_text(f"project_root: '{project}'\n{CONFIG}")
    args = ("evals", "promote", "watched", "--from-monitors", "--root", str(project), "-c", str(project / "keel.yaml"))
    done = keel(home, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    cases = [c for c in yaml.safe_load(suite.read_text())["cases"] if c["id"].startswith("mn-")]
    assert len(cases) == 2 and all("needs-expected" in c["tags"] and "from-monitor" in c["tags"] for c in cases)
    assert all(c["checks"][0]["value"] == BAD for c in cases)  # must not repeat the failing answer
    again = keel(home, *args)
    assert "appended 0 case(s)" in again.stdout and "2 promoted before" in again.stdout


def test_monitor_failed_review_needs_a_monitor_and_after(project: Path) -> None:
    from keel.config.yamlfile import parse_yaml
    from keel.errors import ConfigError
    from keel.features.spec import parse_feature

    with pytest.raises(ConfigError, match="'monitor failed' needs a monitor with checks"):
        parse_feature(parse_yaml("prompt: support\nreview: {when: monitor failed}\n", "f.yaml"), "f")
    with pytest.raises(ConfigError, match="use mode: after"):
        text = "prompt: support\nmonitors: {q: {checks: [grounded]}}\nreview: {when: monitor failed, mode: hold}\n"
        parse_feature(parse_yaml(text, "f.yaml"), "f")


async def test_backfill_scores_past_runs_once_as_their_traces_kept_them(
    pipeline: Any, project: Path, home: Path
) -> None:
    pipe, provider, _ = pipeline
    (project / "features" / "watched.yaml").write_text(
        "prompt: support\nmodel: m\nretrieval: {collection: handbook, top_k: 3, min_score: 0.2}\n"
    )
    await _traffic(pipe, provider, [GOOD] * 6 + [BAD] * 4)  # served before the feature had monitors
    assert pipe.store.jobs.depth()[0] == 0
    _feature(project)  # now it has one, sampling every run
    (project / "keel.yaml").write_text(f"project_root: '{project}'\n{CONFIG}")
    args = ("monitor", "backfill", "watched", "--since", "1d", "-c", str(project / "keel.yaml"))
    dry = keel(home, *args, "--dry-run")
    assert dry.returncode == 0 and "would score 10 runs (watched/quality: 10)" in dry.stdout, dry.stdout + dry.stderr
    done = keel(home, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("│ 10 "))
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["10", "6", "4", "0", "0", "$0.00"]
    scores = pipe.store.monitors.scores("default", "watched", 0, 1e12)
    assert len(scores) == 10 and sum(s.passed is False for s in scores) == 4
    assert {s.why for s in scores} == {"backfilled from the trace (sources: the snippets it kept)"}
    again = keel(home, *args)
    assert "nothing to score: 0 runs" in again.stdout


async def test_a_spent_judge_budget_stops_the_judges_and_says_so(pipeline: Any, project: Path, home: Path) -> None:
    pipe, provider, _ = pipeline
    _feature(project, checks="[not-refusal, {type: llm-rubric, rubric: 'Says how long refunds take'}]")
    spec_path = project / "features" / "watched.yaml"
    spec_path.write_text(spec_path.read_text() + "    budget_usd_day: 0.0000001\n")  # less than one judge call
    store: Store = pipe.store
    await _traffic(pipe, provider, [GOOD] * 3)
    await _score(store, pipe)
    scores = store.monitors.scores("default", "watched", 0, 1e12)
    judged = [s for s in scores if s.check == "llm-rubric"]
    assert [s.status for s in judged] == ["skipped"] * 3
    assert all("judge budget spent ($1e-07 a day): judged checks resume" in (s.reason or "") for s in judged)
    assert [s.status for s in scores if s.check == "not-refusal"] == ["ok"] * 3  # cheap checks go on
    status = Monitors(store, KeelSettings(), project).sweep()[1][0]
    rubric = next(e for e in status.evaluators if e.check == "llm-rubric")
    assert (rubric.ok, rubric.errors, rubric.skipped) == (0, 0, 3) and not rubric.failing  # not an evaluator failure
