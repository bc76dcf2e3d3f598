"""The runner in process: judge checks through the gateway (counted, traced, never a silent score),
the result cache and its keys, and matrix pins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keel.checks.judged import SYSTEM as RUBRIC_SYSTEM
from keel.evals.runner import ResultCache, Variant, run_suite
from keel.evals.suite import Suite, load_suite
from keel.rag import ingest
from keel.testing import Reply
from keel.types import ChatRequest

ANSWER = "Refunds take five business days [1]."
SUITE = """\
feature: support
judge_model: m
cases:
  - id: timing
    inputs: {question: "How long do refunds take?"}
    expected: five business days
    checks:
      - {type: llm-rubric, rubric: States the refund timing, runs: 3, aggregate: majority}
      - {type: grounded}
  - id: plain
    inputs: {question: "When is my refund?"}
    checks: [{type: icontains, value: five business days}]
"""


def suite_of(project: Path, text: str = SUITE) -> Suite:
    path = project / "evals" / "support.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return load_suite(path)


def judge_says(verdicts: list[str]) -> Any:
    """The feature answers; calls carrying the rubric prompt get the next verdict."""
    queue = list(verdicts)

    def respond(req: ChatRequest) -> Reply:
        if req.messages[0]["content"] == RUBRIC_SYSTEM:
            return Reply(queue.pop(0) if len(queue) > 1 else queue[0])
        return Reply(ANSWER)

    return respond


async def test_judges_run_through_the_gateway_and_are_counted(pipeline: Any, project: Path) -> None:
    pipe, provider, _ = pipeline
    provider.responder = judge_says(['{"reason": "states it", "score": 5}', '{"reason": "ok", "score": 4}',
                                     '{"reason": "vague", "score": 2}'])  # fmt: skip
    run = await run_suite(pipe, suite_of(project))
    timing = run.results[0]
    assert timing.error is None and timing.passed, timing
    rubric, grounded = timing.checks
    assert rubric.check == "llm-rubric" and rubric.passed and rubric.score == pytest.approx(2 / 3)
    assert "2/3 runs pass" in rubric.reason and "(scores 5, 4, 2)" in rubric.reason
    assert grounded.passed and "1/1 claims supported" in grounded.reason  # "five business days" is in the doc
    judge_calls = [c for c in provider.calls if c.messages[0]["content"] == RUBRIC_SYSTEM]
    assert len(judge_calls) == 3 and timing.judge_calls == 3
    fmt = judge_calls[0].params["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == ["reason", "score"]
    assert judge_calls[0].params["temperature"] == 0.7  # several runs sample, so the vote means something
    assert all(c.ctx.parent == timing.trace_id and c.ctx.feature == "eval:support" for c in judge_calls)
    assert timing.judge_cost_usd is not None and timing.judge_cost_usd > 0
    assert run.summary.judge_calls == 3 and run.summary.judge_cost_usd == pytest.approx(timing.judge_cost_usd)
    assert run.summary.spent_usd == pytest.approx(run.summary.cost_usd + run.summary.judge_cost_usd)


@pytest.mark.parametrize(
    "garbage",
    ["Sure! The answer looks great.", '{"reason": "fine", "score": 9}', '{"score": 3}', ""],
)
async def test_a_judge_that_talks_nonsense_is_an_error_never_a_score(
    pipeline: Any, project: Path, garbage: str
) -> None:
    pipe, provider, _ = pipeline
    provider.responder = judge_says([garbage])
    run = await run_suite(pipe, suite_of(project))
    timing, plain = run.results
    assert timing.error is not None and "the judge's reply is not a verdict" in timing.error
    assert not timing.passed and timing.checks == []  # no score was made up
    assert plain.error is None and plain.passed  # the run went on
    assert run.summary.errors == 1


async def test_unchanged_cases_are_replayed_and_changes_rerun(pipeline: Any, project: Path) -> None:
    pipe, provider, _ = pipeline
    provider.responder = judge_says(['{"reason": "ok", "score": 5}'])
    cache = ResultCache(pipe.store.evals)
    suite = suite_of(project)
    first = await run_suite(pipe, suite, cache=cache)
    paid = len(provider.calls)
    assert paid == 2 + 3 and first.summary.cached == 0
    again = await run_suite(pipe, suite, cache=cache)
    assert len(provider.calls) == paid, "an unchanged case must not be paid for twice"
    assert again.summary.cached == 2 and again.summary.spent_usd == 0
    assert [r.passed for r in again.results] == [r.passed for r in first.results]
    assert again.summary.cost_usd == pytest.approx(first.summary.cost_usd)  # the cases' cost, as first measured

    async def reruns() -> int:
        before = len(provider.calls)
        await run_suite(pipe, load_suite(project / "evals" / "support.yaml"), cache=cache)
        return len(provider.calls) - before

    # a check's config changes: only that case reruns
    suite_of(project, SUITE.replace("value: five business days", "value: business days"))
    assert await reruns() == 1
    # a new prompt version serves only once the label moves to it; then every case reruns
    prompt = project / "prompts" / "support.md"
    prompt.write_text(prompt.read_text().replace("You are Acme support.", "You are Acme's support desk."))
    assert await reruns() == 0
    pipe.registry.set_label("support", "production", pipe.registry.record_file(prompt))
    assert await reruns() == 2 + 3
    # the retrieval index changes
    (project / "docs" / "shipping.md").write_text("# Shipping\n\nParcels ship within two days.\n")
    ingest(pipe.collections.get("handbook"), [project / "docs"])
    assert await reruns() == 2 + 3
    assert await reruns() == 0


async def test_matrix_pins_the_prompt_version_and_model(pipeline: Any, project: Path) -> None:
    pipe, provider, _ = pipeline
    provider.responder = judge_says(['{"reason": "ok", "score": 5}'])
    suite = suite_of(project)
    await run_suite(pipe, suite)  # records v1
    prompt = project / "prompts" / "support.md"
    prompt.write_text(prompt.read_text().replace("You are Acme support.", "You are Acme's support desk."))
    v1 = await run_suite(pipe, suite, variant=Variant(prompt_version=1, model="m"))
    v2 = await run_suite(pipe, suite, variant=Variant(prompt_version=2))
    assert {r.prompt_version for r in v1.results} == {1} and {r.prompt_version for r in v2.results} == {2}
    assert v1.summary.variant == "v1 · m" and v2.summary.variant == "v2"
    ghost = await run_suite(pipe, suite, variant=Variant(prompt_version=9))
    assert all(r.error is not None and "9" in r.error for r in ghost.results)


def test_expected_sources_must_be_documents_of_the_collection(pipeline: Any, project: Path) -> None:
    from keel.errors import UserError
    from keel.evals.runner import require_feature

    pipe, _, _ = pipeline
    text = SUITE.replace("    expected: five business days\n", "    expected_sources: [refund.md]\n")
    with pytest.raises(UserError, match=r"case 'timing': expected source 'refund.md' is not a document of collection "
                                        r"'handbook' \(did you mean 'refunds.md'\?\)"):  # fmt: skip
        require_feature(pipe, suite_of(project, text))
    require_feature(pipe, suite_of(project, text.replace("[refund.md]", "[refunds.md]")))
