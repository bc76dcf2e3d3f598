from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from keel.checks import CheckContext, CheckError, available, make_check, register
from keel.checks.base import Verdict
from keel.checks.builtin import Params, Run

ANSWER = "Refunds take 5 to 10 business days [1]. Contact billing@harbor.example [2]."


def verdict(spec: str | dict[str, Any], output: str = ANSWER, **ctx: Any) -> Verdict:
    return make_check(spec)(CheckContext(output=output, **ctx))


@pytest.mark.parametrize(
    ("spec", "passed"),
    [
        ({"type": "contains", "value": "business days"}, True),
        ({"type": "contains", "value": "REFUNDS"}, False),
        ({"type": "icontains", "value": "REFUNDS"}, True),
        ({"type": "not-contains", "value": "weeks"}, True),
        ({"type": "contains-any", "value": ["weeks", "days"]}, True),
        ({"type": "contains-all", "value": ["weeks", "days"]}, False),
        ({"type": "regex", "value": r"\d+ to \d+ business days"}, True),
        ({"type": "starts-with", "value": "Refunds"}, True),
        ({"type": "equals", "value": "no"}, False),
        ("is-json", False),
        ("not-is-json", True),
        ("citations-valid", False),  # no sources were given
        ("says-dont-know", False),
        ("refusal", False),
    ],
)
def test_text_checks(spec: str | dict[str, Any], passed: bool) -> None:
    assert verdict(spec).passed is passed


def test_scores_and_reasons_are_informative() -> None:
    partial = verdict({"type": "contains-all", "value": ["days", "weeks", "billing"]})
    assert not partial.passed and partial.score == pytest.approx(2 / 3) and "missing ['weeks']" in partial.reason
    inverted = verdict({"type": "not-contains-all", "value": ["days", "weeks", "billing"]})
    assert inverted.passed and inverted.score == pytest.approx(1 / 3) and inverted.reason.startswith("not (")
    close = verdict(
        {"type": "levenshtein", "value": "Refunds take 5-10 business days [1]. Contact billing [2].", "threshold": 0.7}
    )
    assert close.passed and 0.7 < close.score < 1
    cites = verdict("citations-valid", sources=["refund text"])
    assert not cites.passed and cites.score == 0.5 and "[2] names no source" in cites.reason
    assert verdict("says-dont-know", "I don’t know based on the available documents.").passed  # curly quote


def test_expected_answer_comes_from_the_case_when_no_value_is_given() -> None:
    assert verdict("equals", "  42 ", expected="42").passed
    assert verdict("equals", '{"a": 1}', value={"a": 1}, expected={"a": 1}).passed
    with pytest.raises(CheckError, match="needs a string 'value'"):
        verdict("contains")


def test_structure_and_behaviour_checks() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert verdict({"type": "json-schema", "value": schema}, '{"n": 3}').passed
    bad = verdict({"type": "json-schema", "value": schema}, '{"n": "3"}')
    assert not bad.passed and "at n" in bad.reason
    assert verdict({"type": "latency", "max_ms": 3000}, latency_ms=1200).passed
    assert not verdict({"type": "latency", "max_ms": 3000}, latency_ms=3001).passed
    assert not verdict({"type": "cost", "max_usd": 0.01}).passed  # unknown cost never passes
    assert verdict({"type": "cost", "max_usd": 0.01}, cost_usd=0.002).passed
    assert verdict("finish-reason", finish_reason="stop").passed
    assert not verdict("finish-reason", finish_reason="length").passed


def test_retrieval_metrics() -> None:
    ranked = ["faq.md", "billing/refunds.md", "api/errors.md"]
    recall = verdict({"type": "recall@k", "k": 2}, retrieved_ids=ranked, expected_ids=["billing/refunds.md", "x.md"])
    assert recall.score == 0.5 and recall.passed
    assert verdict("mrr", retrieved_ids=ranked, expected_ids=["billing/refunds.md"]).score == 0.5
    ndcg = verdict({"type": "ndcg@k", "k": 3}, retrieved_ids=ranked, expected_ids=["billing/refunds.md"])
    assert ndcg.score == pytest.approx(1 / np.log2(3))
    miss = verdict({"type": "recall@k", "k": 1, "threshold": 0.5}, retrieved_ids=ranked, expected_ids=["x.md"])
    assert not miss.passed and miss.score == 0
    with pytest.raises(CheckError, match="expected documents"):
        verdict("mrr", retrieved_ids=ranked)


def test_similar_uses_the_supplied_embedder() -> None:
    def embed(texts: list[str]) -> np.ndarray:
        vectors = np.array([[1.0, 0.0] if "refund" in t.lower() else [0.0, 1.0] for t in texts])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    assert verdict({"type": "similar", "value": "refund timing"}, embed=embed).passed
    assert not verdict({"type": "similar", "value": "API keys"}, embed=embed).passed
    with pytest.raises(CheckError, match="needs an embedder"):
        verdict({"type": "similar", "value": "x"})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "contians", "value": "x"}, "unknown check 'contians'; did you mean 'contains'"),
        ({"value": "x"}, "needs a 'type'"),
        ({"type": "regex", "value": "("}, "not a valid regular expression"),
        ({"type": "latency"}, "needs 'max_ms'"),
        ({"type": "latency", "max_ms": "fast"}, "'max_ms' must be int/float, not str"),
        ({"type": "levenshtein", "value": "x", "threshold": 1.5}, "between 0 and 1"),
        ({"type": "contains", "value": "x", "colour": "red"}, r"unknown parameter\(s\) \['colour'\]"),
        ({"type": "json-schema", "value": {"type": "strnig"}}, "not a valid JSON Schema"),
        ({"type": "contains-any", "value": []}, "non-empty list"),
        ({"type": "recall@k", "k": 0}, "between 1 and 1000"),
        ({"type": "llm-rubric"}, "needs 'rubric'"),
        ({"type": "llm-rubric", "rubric": " "}, "'rubric' is empty"),
        ({"type": "llm-rubric", "rubric": "x", "runs": 20}, "between 1 and 9"),
        ({"type": "llm-rubric", "rubric": "x", "aggregate": "median"}, "mean or majority"),
        ({"type": "grounded", "method": "vibes"}, "overlap or llm"),
        ({"type": "grounded", "threshold": -1}, "between 0 and 1"),
    ],
)
def test_misconfigured_checks_say_what_is_wrong(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(CheckError, match=message):
        make_check(spec)


def test_plugins_register_through_the_same_door() -> None:
    def shouty(p: Params) -> Run:
        return lambda ctx: Verdict(ctx.output.isupper(), 1.0 if ctx.output.isupper() else 0.0, "shouting?")

    register("shouty", shouty, requires_llm=True)
    check = make_check("not-shouty")
    assert "shouty" in available() and check.requires_llm and check.inverted
    assert check(CheckContext(output="calm")).passed
    with pytest.raises(CheckError, match="may not start with 'not-'"):
        register("not-x", shouty)


SOURCES = [
    "Card refunds take 5 to 10 business days to appear on your statement.",
    "Annual plans can be refunded in full within 30 days of purchase. After that, no refunds are given.",
]


@pytest.mark.parametrize(
    ("answer", "score", "why"),
    [
        ("Card refunds take 5 to 10 business days [1]. Annual plans are refundable within 30 days [2].", 1.0, ""),
        ("Card refunds take 5 to 10 business days. Annual plans are refundable within 60 days.", 0.5, "60"),
        ("Card refunds take 5 to 10 business days. Refunds are also sent as gift vouchers by post.", 0.5, "voucher"),
        ("Card refunds take 5 to 10 business days. Card refunds are instant.", 0.5, "instant"),
        ("Card refunds take 5 to 10 business days. Annual plans cannot be refunded.", 0.5, "negation differs"),
        ("Yes. Hope this helps!", 1.0, "no factual claims"),
        ("- Card refunds take 5 to 10 business days\n- Annual plans refundable within 30 days", 1.0, ""),
    ],
)
def test_grounded_finds_the_claims_no_source_supports(answer: str, score: float, why: str) -> None:
    got = verdict({"type": "grounded", "threshold": 0.8}, answer, sources=SOURCES)
    assert got.score == score and got.passed == (score >= 0.8)
    assert why in got.reason


def test_grounded_without_sources_supports_nothing() -> None:
    got = verdict("grounded", "Refunds take five business days to arrive.", sources=[])
    assert not got.passed and "no sources were given" in got.reason


def test_grounded_uses_embeddings_for_paraphrase() -> None:
    from keel.rag.embedder import LocalMiniLM

    embedder = LocalMiniLM()
    answer = "Refunds to a card show up after five to ten business days."
    lexical = verdict("grounded", answer, sources=SOURCES[:1])
    semantic = verdict("grounded", answer, sources=SOURCES[:1], embed=embedder.embed)
    assert not lexical.passed and semantic.passed, (lexical, semantic)


def test_model_checks_must_be_awaited_and_need_a_judge() -> None:
    import asyncio

    check = make_check({"type": "llm-rubric", "rubric": "polite"})
    assert check.requires_llm and make_check({"type": "grounded", "method": "llm"}).requires_llm
    assert not make_check("grounded").requires_llm
    with pytest.raises(CheckError, match=r"await check\.evaluate"):
        check(CheckContext(output="hi"))
    with pytest.raises(CheckError, match="supplies the judge"):
        asyncio.run(check.evaluate(CheckContext(output="hi")))


@pytest.mark.parametrize(
    ("scores", "aggregate", "passed", "score"),
    [
        ([5, 4, 1], "majority", True, 2 / 3),
        ([5, 1, 1], "majority", False, 1 / 3),
        ([5, 3, 1], "mean", True, 0.5),  # normalised 1, .5, 0 → mean .5, threshold .5
        ([2, 2, 3], "mean", False, (0.25 + 0.25 + 0.5) / 3),
    ],
)
def test_judge_runs_aggregate(scores: list[int], aggregate: str, passed: bool, score: float) -> None:
    import asyncio

    from keel.checks.base import JudgeError

    replies = iter(f'{{"reason": "r{s}", "score": {s}}}' for s in scores)

    async def judge(messages: list[dict[str, str]], **options: Any) -> str:
        assert "Rubric:\npolite" in messages[1]["content"] and options["schema"]["required"] == ["reason", "score"]
        return next(replies)

    spec = {"type": "llm-rubric", "rubric": "polite", "runs": 3, "aggregate": aggregate}
    got = asyncio.run(make_check(spec).evaluate(CheckContext(output="hi", judge=judge)))
    assert (got.passed, got.score) == (passed, pytest.approx(score))
    inverted = asyncio.run(
        make_check({**spec, "type": "not-llm-rubric"}).evaluate(
            CheckContext(output="hi", judge=lambda m, **o: asyncio.sleep(0, result='{"reason": "x", "score": 5}'))
        )
    )
    assert not inverted.passed
    with pytest.raises(JudgeError, match="not a verdict"):
        asyncio.run(make_check(spec).evaluate(CheckContext(output="hi", judge=lambda m, **o: asyncio.sleep(0, "9/10"))))
