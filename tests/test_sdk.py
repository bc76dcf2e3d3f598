"""The SDK's RunResult carries every field the server's FeatureResult sends, so nothing is dropped."""

from __future__ import annotations

from dataclasses import fields

from keel.features.result import FeatureResult
from keel.sdk import RunResult


def test_the_sdk_result_has_every_field_of_the_feature_result() -> None:
    sent = FeatureResult(feature="support", answer="Five days [1].").as_dict()
    held_only = {"held", "job_id"}  # what a 202 (an answer held for review) fills in, not the server's result
    assert set(sent) == {f.name for f in fields(RunResult)} - held_only
    sent.update(cache="exact", confidence=0.4, guards={"grounded": 0.4})
    got = RunResult.from_dict(sent)
    assert (got.cache, got.confidence, got.guards) == ("exact", 0.4, {"grounded": 0.4})


def test_a_held_response_becomes_a_result_that_says_so() -> None:
    job = {
        "id": "job_1",
        "object": "job",
        "feature": "support",
        "status": "awaiting_review",
        "trace_id": "t1",
        "result": {"review": {"item": "rev_1", "queue": "support"}},
        "message": "A person is checking this answer",
    }
    got = RunResult.from_response(202, job)
    assert got.held and got.job_id == "job_1" and got.answer == "A person is checking this answer"
    assert got.review == {"item": "rev_1", "queue": "support"} and got.trace_id == "t1"
    assert not RunResult.from_response(200, {"answer": "x"}).held
