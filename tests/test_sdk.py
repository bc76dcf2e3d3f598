"""The SDK's RunResult carries every field the server's FeatureResult sends, so nothing is dropped."""

from __future__ import annotations

from dataclasses import fields

from keel.features.result import FeatureResult
from keel.sdk import RunResult


def test_the_sdk_result_has_every_field_of_the_feature_result() -> None:
    sent = FeatureResult(feature="support", answer="Five days [1].").as_dict()
    assert set(sent) == {f.name for f in fields(RunResult)}
    sent.update(cache="exact", confidence=0.4, guards={"grounded": 0.4})
    got = RunResult.from_dict(sent)
    assert (got.cache, got.confidence, got.guards) == ("exact", 0.4, {"grounded": 0.4})
