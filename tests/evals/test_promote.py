"""Production failures become eval cases: feedback with corrections or low scores, promoted into the
suite file — redacted, de-duplicated, each trace once — and the grown suite runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keel.config.settings import FeedbackSettings, ScoreConfig
from keel.errors import InvalidRequest
from keel.evals.runner import run_suite
from keel.evals.suite import load_suite
from tests.cli.test_cli import keel

SUITE = """\
# the golden set for support (hand-written above, promoted below)
feature: support
checks: [{type: not-refusal}]
cases:
  - id: refund-timing   # the classic
    inputs: {question: "How long do refunds take?"}
    checks: [{type: icontains, value: five business days}]
gate: {min_pass_rate: 0.5}
"""
CONFIG = """\
deployments:
  d: {provider: scripted, model: gpt-4o-mini}
models:
  m: {deployments: [d]}
feedback:
  scores:
    rating: {type: numeric, min: 1, max: 5, low_below: 3}
    helpful: {type: boolean}
    answer: {type: text}
"""
SCORES = FeedbackSettings(
    scores={
        "rating": ScoreConfig(type="numeric", min=1, max=5, low_below=3),
        "helpful": ScoreConfig(type="boolean"),
        "answer": ScoreConfig(type="text"),
        "topic": ScoreConfig(type="categorical", values=["billing", "other"], low=["other"]),
    }
)


async def test_corrections_and_low_scores_become_cases(pipeline: Any, project: Path, home: Path) -> None:
    pipe, _, _ = pipeline
    pipe.service.capture_policy = "full"  # promotion redacts whatever the traces kept
    questions = {
        "pii": "How long do refunds take? Mail me at ada.lovelace@example.com",
        "low": "When is my refund coming?",
        "dup": "WHEN is my refund coming",
        "good": "Where is your office?",
        "known": "how long do refunds take",
    }
    runs = {k: await pipe.run("support", {"question": q}, user="u") for k, q in questions.items()}
    assert pipe.service.writer.flush(5.0)
    feedback = [
        ("pii", "answer", None, "Refunds take five business days; write to ada.lovelace@example.com"),
        ("low", "rating", 1, None),
        ("dup", "helpful", False, None),
        ("good", "helpful", True, None),
        ("good", "rating", 4, None),
        ("known", "answer", None, "Five business days."),
    ]
    for key, name, value, correction in feedback:
        pipe.store.feedback.add(runs[key].trace_id, name, value, tenant=None, correction=correction, scores=SCORES)
    (project / "evals").mkdir(exist_ok=True)
    suite_path = project / "evals" / "support.yaml"
    suite_path.write_text(SUITE)
    (project / "keel.yaml").write_text(CONFIG)
    args = ("evals", "promote", "support", "--from-feedback", "--root", str(project), "-c", str(project / "keel.yaml"))

    dry = keel(home, *args, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would append 2 case(s)" in dry.stdout and "2 duplicate(s) of existing cases" in dry.stdout
    assert suite_path.read_text() == SUITE

    done = keel(home, *args)
    assert done.returncode == 0, done.stderr
    text = suite_path.read_text()
    assert text.startswith(SUITE.split("gate:")[0]) and text.rstrip().endswith("gate: {min_pass_rate: 0.5}")
    assert "ada.lovelace" not in text and "[EMAIL]" in text  # redacted in inputs and in the correction
    assert f"fb-{runs['pii'].trace_id[:10]}" in text and "(answer: correction)" in text
    # "When is my refund coming?" and "WHEN is my refund coming" are one case: the newest feedback's
    kept = [k for k in ("low", "dup") if f"# from trace {runs[k].trace_id}" in text]
    assert kept == ["dup"] and "(helpful=false)" in text
    suite = load_suite(suite_path)
    added = {c.id: c for c in suite.spec.cases[1:]}
    assert len(added) == 2
    from_correction = added[f"fb-{runs['pii'].trace_id[:10]}"]
    assert from_correction.expected.startswith("Refunds take five business days") and from_correction.tags == [
        "from-feedback"
    ]
    from_score = added[f"fb-{runs['dup'].trace_id[:10]}"]
    assert "needs-expected" in from_score.tags and from_score.expected is None

    again = keel(home, *args)
    assert "appended 0 case(s)" in again.stdout and "promoted before" in again.stdout
    assert suite_path.read_text() == text

    run = await run_suite(pipe, suite)
    by_id = {r.case_id: r for r in run.results}
    assert all(r.error is None for r in run.results), run.results
    # the feature still gives the disliked answer, so the case promoted from the low score fails
    assert not by_id[from_score.id].passed and "not (cosine" in by_id[from_score.id].checks[-1].reason


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ratnig", 3, "unknown score 'ratnig'; keel.yaml feedback.scores configures: answer, helpful, rating, topic"),
        ("rating", 9, "between 1.0–5.0, not 9"),
        ("rating", True, "is a number"),
        ("helpful", "yes", "true or false"),
        ("topic", "weather", "one of billing, other"),
    ],
)
def test_feedback_is_checked_against_score_configs(home: Path, name: str, value: Any, message: str) -> None:
    from keel.store import Store, db_path

    store = Store.at(db_path(home))
    store.db.run("INSERT INTO traces(id, ts, operation, status, tenant) VALUES ('t1', 0, 'feature', 'ok', 'acme')")
    with pytest.raises(InvalidRequest, match=message):
        store.feedback.add("t1", name, value, tenant="acme", scores=SCORES)
    store.feedback.add("t1", "ratnig", 3, tenant="acme", scores=FeedbackSettings(scores=SCORES.scores, strict=False))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"type": "numeric", "min": 5, "max": 1}, "min .5. must be below max"),
        ({"type": "numeric", "min": 1, "max": 5, "low_below": 9}, "low_below must lie between"),
        ({"type": "boolean", "values": ["a"]}, "values and low are for categorical"),
        ({"type": "categorical"}, "lists its values"),
        ({"type": "categorical", "values": ["a"], "low": ["b"]}, "not in values"),
        ({"type": "text", "min": 1}, "for numeric scores"),
    ],
)
def test_score_configs_are_validated(config: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        ScoreConfig.model_validate(config)
