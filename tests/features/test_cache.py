"""The answer cache in the feature pipeline: exact replays (streams too), semantic hits on
paraphrases only, scopes that make prompt and index changes misses, PII never cached semantically,
entries that no longer deserialise dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keel.features.pipeline import Delta, Done, Started
from keel.rag import ingest
from keel.testing import Reply

Q = {"question": "How long do refunds take?"}


def cached(project: Path, spec: str) -> None:
    (project / "features" / "support.yaml").write_text(
        "prompt: support\nmodel: m\nretrieval: {collection: handbook, top_k: 3, min_score: 0.2}\n" + spec
    )


async def test_exact_hits_replay_without_a_model_call(pipeline: Any, project: Path) -> None:
    pipe, provider, _ = pipeline
    for tenant in ("acme", "globex"):  # each tenant has its own copy of the handbook
        ingest(pipe.collections.get("handbook", tenant=tenant, create=True), [project / "docs"])
    cached(project, "cache: {exact: true}\n")
    provider.responder = lambda req: Reply("Refunds take five business days [1].")
    first = await pipe.run("support", Q, tenant="acme")
    assert first.cache == "miss" and len(provider.calls) == 1
    again = await pipe.run("support", {"question": "  How long do refunds   take? "}, tenant="acme")  # normalised
    assert again.cache == "exact" and len(provider.calls) == 1 and again.cost_usd == 0
    assert again.answer == first.answer and [s.doc_id for s in again.sources] == [s.doc_id for s in first.sources]
    assert again.citations[0].valid and f"cache: exact hit of trace {first.trace_id}" in again.notes
    other_tenant = await pipe.run("support", Q, tenant="globex")
    assert other_tenant.cache == "miss" and len(provider.calls) == 2  # scoped by tenant
    events = [e async for e in pipe.events("support", Q, tenant="acme", stream=True)]
    assert isinstance(events[0], Started) and isinstance(events[-1], Done)
    assert "".join(e.text for e in events if isinstance(e, Delta)) == first.answer  # streams replay as streams
    # the prompt's production label moves: a new scope
    prompt = project / "prompts" / "support.md"
    prompt.write_text(prompt.read_text().replace("You are Acme support.", "You are Acme's help desk."))
    pipe.registry.set_label("support", "production", pipe.registry.record_file(prompt))
    assert (await pipe.run("support", Q, tenant="acme")).cache == "miss"
    assert (await pipe.run("support", Q, tenant="acme")).cache == "exact"
    # the index changes: a new scope
    (project / "docs" / "refunds.md").write_text("# Refunds\n\n## Timing\nRefunds take ten business days.\n")
    ingest(pipe.collections.get("handbook", tenant="acme"), [project / "docs"])
    assert (await pipe.run("support", Q, tenant="acme")).cache == "miss"


async def test_semantic_hits_paraphrases_and_the_gate_refuses_lookalikes(pipeline: Any, project: Path) -> None:
    pipe, provider, _ = pipeline
    cached(project, "cache: {semantic: {threshold: 0.8}}\n")
    provider.responder = lambda req: Reply("Refunds take five business days [1].")
    await pipe.run("support", {"question": "How long do card refunds take?"})
    para = await pipe.run("support", {"question": "How long does a card refund take?"})
    assert para.cache == "semantic" and any("cache: semantic hit (cosine" in n for n in para.notes)
    calls = len(provider.calls)
    for lookalike in ("How long do bank transfer refunds take?", "Why don't card refunds arrive?"):
        result = await pipe.run("support", {"question": lookalike})
        assert result.cache == "miss", lookalike
    assert len(provider.calls) == calls + 2
    gated = await pipe.run("support", {"question": "How long do card refunds take in 30 days?"})
    assert gated.cache == "miss"
    private = await pipe.run("support", {"question": "How long do card refunds take? I am ada@example.com"})
    assert private.cache == "miss" and any("personal data" in n for n in private.notes)
    rows = pipe.store.db.conn.execute("SELECT text, vector IS NOT NULL FROM cache_entries").fetchall()
    assert all(not (vec and "ada@" in text) for text, vec in rows)  # never stored for semantic lookup


async def test_entries_that_no_longer_deserialise_are_misses(
    pipeline: Any, project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipe, provider, _ = pipeline
    cached(project, "cache: {exact: true}\n")
    await pipe.run("support", Q)
    pipe.store.db.conn.execute("UPDATE cache_entries SET value = '{not json'")
    with caplog.at_level("WARNING", logger="keel.cache"):
        again = await pipe.run("support", Q)
    assert again.cache == "miss" and len(provider.calls) == 2 and "no longer deserialises" in caplog.text
    assert (await pipe.run("support", Q)).cache == "exact"


def test_cache_specs_are_validated(project: Path) -> None:
    from keel.errors import ConfigError
    from keel.features.spec import load_feature

    cached(project, "cache: {semantic: {threshold: 0.2}}\n")
    with pytest.raises(ConfigError, match=r"greater than or equal to 0\.5"):
        load_feature(project, "support")


async def test_tier_routing_escalates_only_when_the_rule_holds(pipeline: Any, project: Path) -> None:
    from keel.features.pipeline import FeaturePipeline
    from keel.gateway.runtime import build_service, close_service
    from keel.testing import ScriptedProvider
    from tests.conftest import make_settings

    pipe, _, home = pipeline
    settings = make_settings(
        "deployments:\n  s: {provider: scripted, model: gpt-4o-mini}\n  b: {provider: scripted, model: gpt-4o}\n"
        "models:\n  small: {deployments: [s]}\n  large: {deployments: [b]}\n"
    )
    service = build_service(settings, home)
    small, large = service.gateway.adapters["s"], service.gateway.adapters["b"]
    assert isinstance(small, ScriptedProvider) and isinstance(large, ScriptedProvider)
    small.responder = lambda req: Reply(
        "I don't know." if "refund" in str(req.messages[-1]["content"]) else "Five days [1]."
    )
    large.responder = lambda req: Reply("Refunds take five business days [1].")
    (project / "features" / "support.yaml").write_text(
        "prompt: support\nretrieval: {collection: handbook, top_k: 3, min_score: 0.2}\n"
        "route: {first: small, escalate_to: large, when: [says-dont-know]}\n"
    )
    routed = FeaturePipeline(service, project, pipe.store, collections=pipe.collections)
    try:
        escalated = await routed.run("support", {"question": "How long do refunds take?"})
        assert escalated.model == "large" and escalated.answer.startswith("Refunds take")
        assert "route: small → large (says-dont-know)" in escalated.notes
        stayed = await routed.run("support", {"question": "How long does timing take?"})
        assert stayed.model == "small" and stayed.answer == "Five days [1]." and len(large.calls) == 1
        events = [e async for e in routed.events("support", {"question": "How long do refunds take?"}, stream=True)]
        assert "".join(e.text for e in events if isinstance(e, Delta)).startswith("Refunds take")
    finally:
        await close_service(service)


def test_routing_rules_are_checked_when_the_spec_loads(project: Path) -> None:
    from keel.errors import ConfigError
    from keel.features.spec import load_feature

    (project / "features" / "support.yaml").write_text(
        "prompt: support\nroute: {first: a, escalate_to: b, when: [{type: llm-rubric, rubric: x}]}\n"
    )
    with pytest.raises(ConfigError, match="routing rules must be cheap"):
        load_feature(project, "support")
    (project / "features" / "support.yaml").write_text(
        "prompt: support\nroute: {first: a, escalate_to: b, when: [sayz]}\n"
    )
    with pytest.raises(ConfigError, match="unknown check 'sayz'"):
        load_feature(project, "support")


async def test_a_features_own_budget_applies_to_its_calls(pipeline: Any, project: Path) -> None:
    from keel.cost.budgets import BudgetExceeded
    from keel.errors import InvalidRequest

    pipe, provider, _ = pipeline
    provider.responder = lambda req: Reply("Five days [1].")
    cached(project, "budget: {per_call_usd: 0.01, per_user_day_usd: 0.0002}\n")
    ok = await pipe.run("support", Q, user="u1")  # worst case ~$0.0001 at gpt-4o-mini prices (200 max tokens)
    assert ok.answer == "Five days [1]."
    with pytest.raises(BudgetExceeded, match=r"budget 'support.per_user_day' for user u1 is exhausted"):
        for _ in range(5):
            await pipe.run("support", Q, user="u1")
    assert (await pipe.run("support", Q, user="u2")).answer  # each user their own
    cached(project, "budget: {per_call_usd: 0.000001}\n")
    with pytest.raises(InvalidRequest, match=r"allows \$1e-06 per call; this one may cost up to"):
        await pipe.run("support", Q, user="u3")
