"""Review routing in the feature spec and the pipeline: the condition language (parsed once, errors
with file and line), checks, a stable sample, the route on the result and the trace, and a held
answer that is neither streamed nor cached before a person approves it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keel.config.yamlfile import parse_yaml
from keel.errors import ConfigError
from keel.features.conditions import ConditionError, parse_condition
from keel.features.pipeline import Delta, Done
from keel.features.reviewing import sampled
from keel.features.spec import parse_feature
from keel.store import Store, db_path


@pytest.mark.parametrize(
    ("text", "values", "holds"),
    [
        ("confidence < 0.6", {"confidence": 0.42}, True),
        ("confidence < 0.6", {"confidence": 0.6}, False),
        ("confidence < 0.6", {"confidence": None}, False),  # no guards ran: an ordering with nothing is false
        ("not confidence >= 0.6", {"confidence": None}, True),
        ("guards.grounded < 0.8 or not citations_valid", {"guards": {"grounded": 0.9}, "citations_valid": False}, True),
        ("guards.grounded < 0.8 and cost_usd > 0.01", {"guards": {"grounded": 0.5}, "cost_usd": None}, False),
        ('model == "accurate" and 0.2 <= confidence < 0.5', {"model": "accurate", "confidence": 0.3}, True),
        ("found_nothing == True", {"found_nothing": True}, True),
        ("confidence < 0.5 or says_dont_know", {"confidence": 0.9, "says_dont_know": True}, True),
        ("confidence < -1", {"confidence": 0.0}, False),
        ("model < 3", {"model": "local"}, False),  # a string against a number is not a match
    ],
)
def test_conditions_evaluate_without_eval(text: str, values: dict[str, Any], holds: bool) -> None:
    assert parse_condition(text)(values) is holds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("confidence <", "does not parse"),
        ("__import__('os').system('x')", "call is not part of the condition language"),
        ("confidense < 0.5", "unknown name 'confidense'"),
        ("confidence + 1 > 0", "binop is not part of"),
        ("confidence in [1]", "only < <= > >= == != compare"),
        ("guards.telepathy < 0.5", "guards.telepathy is not an output guard"),
        ("", "non-empty expression"),
        ("x" * 600, "at most 500"),
    ],
)
def test_a_condition_that_is_not_the_language_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        parse_condition(text, guards={"grounded"})


def test_why_names_the_values() -> None:
    condition = parse_condition("confidence < 0.6 or guards.grounded < 0.8")
    assert condition.why({"confidence": 0.4213, "guards": {}}) == (
        "confidence < 0.6 or guards.grounded < 0.8 (confidence 0.421, guards.grounded unknown)"
    )


def _spec(text: str) -> Any:
    return parse_feature(parse_yaml(text, "features/answer.yaml"), "answer")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prompt: p\nreview: {when: 'confidence <'}\n", "features/answer.yaml:2: review.when:"),
        (
            "prompt: p\nreview: {when: 'confidence < 0.5'}\n",
            "answer.yaml:2: review.when: 'confidence' comes from the output guards",
        ),
        (
            "prompt: p\nguards: {output: [citations]}\nreview:\n  when: 'guards.grounded < 0.5'\n",
            "answer.yaml:4: review.when: 'guards.grounded < 0.5': column 1: guards.grounded is not an output guard",
        ),
        ("prompt: p\nreview: {mode: hold}\n", "say which answers go to review"),
        ("prompt: p\nreview: {sample: 1.5}\n", "review.sample"),
        ("prompt: p\nreview: {sample: 0.1, mode: later}\n", "review.mode"),
        ("prompt: p\nreview: {sample: 0.1, queue: 'a b'}\n", "review.queue"),
        ("prompt: p\nreview: {when: [{type: llm-rubric, rubric: x}]}\n", "calls a model"),
        ("prompt: p\nreview: {when: [{type: telepathy}]}\n", "telepathy"),
        ("prompt: p\nreview: {sample: 0.1, colour: red}\n", "review.colour: unknown key"),
    ],
)
def test_a_bad_review_section_names_the_file_line_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _spec(text)


def test_the_sample_is_stable_and_near_its_share() -> None:
    ids = [f"{i:032x}" for i in range(20_000)]
    share = sum(sampled(t, 0.1) for t in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert [sampled(t, 0.1) for t in ids[:200]] == [sampled(t, 0.1) for t in ids[:200]]
    assert not any(sampled(t, 0.0) for t in ids[:200]) and all(sampled(t, 1.0) for t in ids[:200])


def _write(project: Path, name: str, review: str) -> None:
    (project / "features" / f"{name}.yaml").write_text(
        "prompt: support\nmodel: m\nretrieval: {collection: handbook, top_k: 3, min_score: 0.2}\n"
        f"guards: {{output: [citations]}}\ncache: {{exact: true}}\nreview: {review}\n"
    )


async def test_a_low_confidence_answer_is_routed_with_its_reason_on_the_trace(pipeline: Any, project: Path) -> None:
    pipe, provider, home = pipeline
    _write(project, "checked", "{when: 'confidence < 0.6', mode: after, queue: support}")
    provider.enqueue("Refunds usually arrive within a week.")  # no source supports it, so no citation: scored 0
    result = await pipe.run("checked", {"question": "How long do refunds take?"})
    assert result.confidence is not None and result.confidence < 0.6 and result.guard_reasons["citations"]
    assert result.review == {
        "queue": "support",
        "mode": "after",
        "reason": f"confidence < 0.6 (confidence {result.confidence:.3g})",
        "sampled": False,
    }
    assert any(n.startswith("review: queued in 'support'") for n in result.notes)
    assert pipe.service.writer.flush()
    with Store.at(db_path(home)) as store:
        trace = store.traces.get(result.trace_id, tenant=None)
    assert trace is not None
    step = next(s for s in trace.steps if s["name"] == "review")
    assert step["found"]["confidence"] == result.confidence and step["found"]["routed"]["queue"] == "support"
    provider.enqueue("Refunds take five business days [1].")
    cited = await pipe.run("checked", {"question": "And how long for a card refund?"})
    assert cited.confidence == 1.0 and cited.review is None


async def test_a_held_answer_is_not_streamed_or_cached_until_a_person_approves(pipeline: Any, project: Path) -> None:
    pipe, provider, _ = pipeline
    _write(project, "held", "{when: 'confidence < 0.6', mode: hold}")
    provider.enqueue("Refunds usually arrive within a week.")
    events = [e async for e in pipe.events("held", {"question": "Refunds?"}, stream=True)]
    assert not any(isinstance(e, Delta) for e in events)  # nothing reached the user before the review
    done = next(e for e in events if isinstance(e, Done))
    assert done.result.review is not None and done.result.review["mode"] == "hold"
    provider.enqueue("Refunds take five business days [1].")
    again = await pipe.run("held", {"question": "Refunds?"})
    assert again.cache == "miss" and again.review is None  # the held answer was never replayed
    provider.enqueue("Refunds take five business days [1].")
    streamed = [e async for e in pipe.events("held", {"question": "Refunds, please?"}, stream=True)]
    assert "".join(e.text for e in streamed if isinstance(e, Delta)) == "Refunds take five business days [1]."


async def test_checks_route_too_and_evals_only_see_the_route(pipeline: Any, project: Path) -> None:
    pipe, provider, home = pipeline
    _write(project, "checks", "{when: [says-dont-know], mode: hold, queue: desk}")
    provider.enqueue("I don't know.")
    result = await pipe.run("checks", {"question": "How long do refunds take?"})
    assert result.review is not None and result.review["reason"] == "says-dont-know"
    from keel.features.reviewing import run_values

    assert run_values(result)["says_dont_know"] and not run_values(result)["refusal"]
    _write(project, "nothing", "{when: 'found_nothing', queue: desk}")
    empty = await pipe.run("nothing", {"question": "What is the meaning of life?"})
    assert empty.found_nothing and empty.review is not None and empty.review["reason"].startswith("found_nothing")
    with Store.at(db_path(home)) as store:
        assert store.reviews.find(tenant=None) == []  # the pipeline decides; only a serving caller queues
