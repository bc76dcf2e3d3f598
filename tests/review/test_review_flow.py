"""Decisions flow back: runs held for review are decided in the terminal (`keel review …`), each
decision is feedback on its trace, `keel evals promote --from-reviews` turns them into eval cases
(edit → expected + similar, reject → not-similar, each trace once), `keel review stats` prints the
threshold table, and an edit that breaks the feature's schema is refused naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keel.config.settings import KeelSettings
from keel.errors import InvalidRequest
from keel.evals.suite import load_suite
from keel.review import ReviewQueue
from keel.store import Store, db_path
from tests.cli.test_cli import keel

SUITE = """\
feature: checked
cases:
  - id: refund-timing
    inputs: {question: "How long do refunds take?"}
    checks: [{type: icontains, value: five business days}]
"""
CONFIG = "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"


def _feature(project: Path) -> None:
    (project / "features" / "checked.yaml").write_text(
        "prompt: support\nmodel: m\nretrieval: {collection: handbook, top_k: 3, min_score: 0.2}\n"
        "guards: {output: [citations]}\nreview: {when: 'confidence < 0.6', mode: hold, queue: support, sample: 1}\n"
    )


async def _held(pipe: Any, home: Path, project: Path, answers: dict[str, str]) -> dict[str, Any]:
    """Each question run and held for review as the HTTP route holds it: question → item."""
    _, provider = pipe.service, pipe.service.gateway.adapters["d"]
    queue = ReviewQueue(pipe.store, KeelSettings(), project)
    from keel.features.spec import load_feature

    items = {}
    for question, answer in answers.items():
        provider.enqueue(answer)
        result = await pipe.run("checked", {"question": question})
        spec = load_feature(project, "checked")
        items[question] = queue.route(spec, result, {"question": question}, tenant="default", payload={})
    assert pipe.service.writer.flush(5.0)
    return items


async def test_decisions_in_the_terminal_become_feedback_and_eval_cases(
    pipeline: Any, project: Path, home: Path
) -> None:
    pipe, _, _ = pipeline
    _feature(project)
    items = await _held(
        pipe,
        home,
        project,
        {
            "How long do refunds take?": "Refunds take five business days [1].",  # right and cited: approve
            "When will my refund arrive?": "Refunds take ten days.",  # wrong: edit
            "Can I get a refund in cash?": "Yes, always in cash.",  # wrong: reject
        },
    )
    (project / "keel.yaml").write_text(f"project_root: '{project}'\n{CONFIG}")
    cfg = ("-c", str(project / "keel.yaml"))
    listed = keel(home, "review", "list", "--queue", "support", *cfg)
    assert listed.returncode == 0, listed.stderr
    assert all(i.id in listed.stdout for i in items.values())
    right, wrong, worse = items.values()
    shown = keel(home, "review", "show", right.id, *cfg)
    assert "five business days" in shown.stdout and "[1]" in shown.stdout and "guard citations" in shown.stdout
    assert keel(home, "review", "approve", right.id, "--as", "ann", *cfg).returncode == 0
    edited = keel(home, "review", "edit", wrong.id, "--output", "Refunds take five business days [1].", *cfg)
    assert edited.returncode == 0 and "edit by" in edited.stdout and "succeeded" in edited.stdout, edited.stderr
    assert keel(home, "review", "reject", worse.id, "--reason", "we never refund cash", *cfg).returncode == 0
    twice = keel(home, "review", "reject", right.id, *cfg)
    assert twice.returncode == 2 and "already decided (approve by ann)" in twice.stderr

    with Store.at(db_path(home)) as store:
        job = store.jobs.get(str(worse.job_id), tenant="default")
        assert job is not None and job.status == "succeeded" and "follow up" in job.result["answer"]
        labels = [f.label for i in items.values() for f in store.feedback.for_trace(i.trace_id, tenant="default")]
    assert labels == ["approve", "edit", "reject"]

    stats = keel(home, "review", "stats", "--queue", "support", "--json", *cfg)
    data = json.loads(stats.stdout)[0]
    assert data["decided"] == 3 and data["backlog"] == 0
    assert {r["reviewer"]: r["n"] for r in data["by_reviewer"]}["ann"] == 1
    assert data["agreement"]["n"] == 3 and data["agreement"]["wrong"] == 2 and data["agreement"]["auc"] == 1.0
    table = keel(home, "review", "stats", *cfg)
    assert "confidence vs reviewers" in table.stdout and "wrong caught" in table.stdout

    (project / "evals").mkdir(exist_ok=True)
    suite_path = project / "evals" / "checked.yaml"
    suite_path.write_text(SUITE)
    args = ("evals", "promote", "checked", "--from-reviews", "--root", str(project), *cfg)
    done = keel(home, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    cases = {c.id: c for c in load_suite(suite_path).spec.cases}
    # the approved answer duplicates the hand-written case's question; the edit and the reject are new
    edit_case, reject_case = cases[f"rv-{wrong.trace_id[:10]}"], cases[f"rv-{worse.trace_id[:10]}"]
    assert edit_case.expected == "Refunds take five business days [1]." and edit_case.tags == ["from-review"]
    assert reject_case.expected is None and "needs-expected" in reject_case.tags
    assert reject_case.checks[0]["type"] == "not-similar" and "cash" in reject_case.checks[0]["value"]
    again = keel(home, *args)
    assert "appended 0 case(s)" in again.stdout and "promoted before" in again.stdout
    neither = keel(home, "evals", "promote", "checked", "--root", str(project), *cfg)
    assert neither.returncode == 2 and "--from-reviews" in neither.stderr


async def test_an_edit_that_breaks_the_schema_is_refused_naming_the_field(
    pipeline: Any, project: Path, home: Path
) -> None:
    pipe, provider, _ = pipeline
    (project / "features" / "extract.yaml").write_text(
        "prompt: extract\nmodel: m\noutput: {schema: schemas/person.json, retries: 1}\n"
        "review: {sample: 1, mode: hold, queue: people}\n"
    )
    provider.enqueue('{"name": "Ada"}')
    result = await pipe.run("extract", {"text": "Ada wrote it"})
    from keel.features.spec import load_feature

    queue = ReviewQueue(pipe.store, KeelSettings(), project)
    item = queue.route(load_feature(project, "extract"), result, {"text": "Ada wrote it"}, tenant="default")
    assert item is not None
    queue.claim(item.id, tenant="default", who="ann")
    for output, message in ((
        {"name": 7}, "at name: 7 is not of type 'string'"), ({}, "at \\(root\\): 'name' is a required property"),
        ("not json", "must be JSON"),
    ):  # fmt: skip
        with pytest.raises(InvalidRequest, match=message):
            queue.decide(item.id, {"action": "edit", "output": output}, tenant="default", who="ann")
    decided = queue.decide(item.id, {"action": "edit", "output": {"name": "Ada L."}}, tenant="default", who="ann")
    job = pipe.store.jobs.get(str(decided.job_id), tenant="default")
    assert job is not None and job.result["value"] == {"name": "Ada L."} and job.result["answer"] == '{"name":"Ada L."}'


async def test_a_backfill_queues_past_runs_the_condition_holds_on_once(
    pipeline: Any, project: Path, home: Path
) -> None:
    pipe, provider, _ = pipeline
    (project / "features" / "later.yaml").write_text(
        "prompt: support\nmodel: m\nretrieval: {collection: handbook, top_k: 3, min_score: 0.2}\n"
        "guards: {output: [citations]}\n"
    )
    runs = {}
    for answer in ("Refunds take five business days [1].", "Refunds usually arrive within a week.", "I don't know."):
        provider.enqueue(answer)
        runs[answer] = await pipe.run("later", {"question": "How long do refunds take?"})
    assert pipe.service.writer.flush(5.0)
    (project / "features" / "later.yaml").write_text(
        (project / "features" / "later.yaml").read_text() + "review: {when: 'confidence < 0.6', queue: late}\n"
    )
    (project / "keel.yaml").write_text(f"project_root: '{project}'\n{CONFIG}")
    cfg = ("-c", str(project / "keel.yaml"))
    dry = keel(home, "review", "backfill", "later", "--since", "1h", "--dry-run", *cfg)
    assert dry.returncode == 0, dry.stderr
    assert "3 run(s) read, 2 where confidence < 0.6: would queue 2 in late" in dry.stdout
    done = keel(home, "review", "backfill", "later", "--since", "1h", *cfg)
    assert "queued 2 in late" in done.stdout, done.stdout + done.stderr
    again = keel(home, "review", "backfill", "later", "--since", "1h", "--when", "says_dont_know", *cfg)
    assert "1 where says_dont_know: queued 0 in late, 1 already in review" in again.stdout, again.stdout
    with Store.at(db_path(home)) as store:
        items = {i.trace_id: i for i in store.reviews.find(tenant="default", queue="late")}
    cited = runs["Refunds take five business days [1]."].trace_id
    assert cited not in items and len(items) == 2
    item = items[runs["Refunds usually arrive within a week."].trace_id]
    assert item.reason is not None and item.reason.startswith("backfill: confidence < 0.6 (confidence 0.5")
    assert item.confidence == 0.5 and item.view["guards"]["citations"]["score"] == 0.5
    bad = keel(home, "review", "backfill", "later", "--when", "confidence <", *cfg)
    assert bad.returncode == 2 and "--when:" in bad.stderr and "does not parse" in bad.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("review: {queues: {support: {webhook: 'ftp://x'}}}", "review.queues.support.webhook: webhook must be an http"),
        ("review: {queues: {support: {webhook: 'https://u:p@x.io'}}}", "must not carry credentials"),
        ("review: {raw_roles: [ingest]}", "review.raw_roles.0"),
        ("review: {claim_minutes: 0}", "review.claim_minutes"),
    ],
)
def test_review_settings_are_checked(text: str, message: str) -> None:
    from keel.config import settings_from_yaml
    from keel.config.yamlfile import parse_yaml
    from keel.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        settings_from_yaml(parse_yaml(text, "keel.yaml"))
