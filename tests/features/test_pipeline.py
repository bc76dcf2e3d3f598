from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import ConfigError, InvalidRequest
from keel.features.pipeline import FeaturePipeline
from keel.features.prompts import PromptRegistry
from keel.features.spec import FeatureNotFound
from keel.gateway.runtime import build_service, close_service
from keel.rag import ingest
from keel.rag.backends import Backend
from keel.rag.embedder import LocalMiniLM
from keel.store import connect, db_path
from keel.store.traces import get_trace
from keel.testing import ScriptedProvider
from tests.conftest import make_settings

PROMPT = """---
description: Answer a support question
params: {max_tokens: 200}
inputs:
  question: {type: str}
---
[system]
You are Acme support.
[user]
{{ question }}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for folder in ("features", "prompts", "schemas", "docs"):
        (tmp_path / folder).mkdir()
    (tmp_path / "prompts" / "support.md").write_text(PROMPT)
    (tmp_path / "prompts" / "extract.md").write_text("---\ninputs:\n  text: {type: str}\n---\nExtract: {{ text }}")
    (tmp_path / "features" / "support.yaml").write_text(
        "prompt: support\nmodel: m\nretrieval: {collection: handbook, top_k: 3, min_score: 0.2}\n"
    )
    (tmp_path / "features" / "extract.yaml").write_text(
        "prompt: extract\nmodel: m\noutput: {schema: schemas/person.json, retries: 1}\n"
    )
    (tmp_path / "features" / "guarded.yaml").write_text("prompt: support\nguards: {input: [injection]}\n")
    (tmp_path / "schemas" / "person.json").write_text(
        '{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}'
    )
    (tmp_path / "docs" / "refunds.md").write_text("# Refunds\n\n## Timing\nRefunds take five business days.\n")
    return tmp_path


@pytest.fixture
async def pipeline(project: Path, home: Path):  # type: ignore[no-untyped-def]
    settings = make_settings(
        "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"
    )
    service = build_service(settings, home)
    backend = Backend(settings, home)
    embedder = LocalMiniLM()
    ingest(backend.open("handbook", embedder, create=True), [project / "docs"])
    pipe = FeaturePipeline(
        service,
        project,
        PromptRegistry(connect(db_path(home)), project / "prompts"),
        backend=backend,
        embedder=embedder,
    )
    provider = service.gateway.adapters["d"]
    assert isinstance(provider, ScriptedProvider)
    yield pipe, provider, home
    backend.close()
    await close_service(service)


async def test_a_feature_with_retrieval_end_to_end(pipeline) -> None:  # type: ignore[no-untyped-def]
    pipe, provider, home = pipeline
    provider.enqueue("Refunds take five business days [1].")
    result = await pipe.run("support", {"question": "How long do refunds take?"}, user="u42")
    assert result.answer == "Refunds take five business days [1]." and result.prompt_version == 1
    assert [c.valid for c in result.citations] == [True] and result.sources[0].doc_id == "refunds.md"
    system = provider.calls[-1].messages[0]["content"]
    assert system.startswith("You are Acme support.") and "[1] refunds.md — Refunds › Timing" in system
    assert provider.calls[-1].max_tokens == 200
    pipe.service.writer.flush()
    trace = get_trace(connect(db_path(home)), result.trace_id)
    assert trace is not None and (trace.feature, trace.user) == ("support", "u42") and result.cost_usd is not None


async def test_nothing_relevant_is_a_graceful_answer_without_a_model_call(pipeline) -> None:  # type: ignore[no-untyped-def]
    pipe, provider, _ = pipeline
    result = await pipe.run("support", {"question": "What is the airspeed of an unladen swallow?"})
    assert result.found_nothing and "I don't know" in result.answer and provider.calls == []


async def test_structured_feature_returns_validated_values(pipeline) -> None:  # type: ignore[no-untyped-def]
    pipe, provider, _ = pipeline
    provider.enqueue("Ada, probably", '{"name": "Ada"}')
    result = await pipe.run("extract", {"text": "Ada Lovelace wrote the first program."})
    assert result.value == {"name": "Ada"} and result.attempts == 2
    pipe.service.writer.flush()
    trace = get_trace(connect(db_path(pipe.service.writer.path.parent)), result.trace_id)
    assert trace is not None and trace.feature == "extract"
    assert result.cost_usd is not None and result.cost_usd > trace.cost_usd  # both attempts counted


async def test_declared_but_unbuilt_steps_are_refused_and_inputs_checked(pipeline) -> None:  # type: ignore[no-untyped-def]
    pipe, _, _ = pipeline
    with pytest.raises(ConfigError, match="'guards' is declared, but its step arrives with issue 7"):
        await pipe.run("guarded", {"question": "hi"})
    with pytest.raises(Exception, match="missing input 'question'"):
        await pipe.run("support", {})
    with pytest.raises(FeatureNotFound, match="no feature 'nope'"):
        await pipe.run("nope", {})


async def test_the_context_policy_guards_the_window(pipeline, project: Path) -> None:  # type: ignore[no-untyped-def]
    pipe, _, _ = pipeline
    (project / "features" / "small.yaml").write_text("prompt: extract\nmodel: m\ncontext: {policy: fail}\n")
    pipe.service.gateway.routes["m"] = pipe.service.gateway.routes["m"].__class__(
        "m",
        pipe.service.gateway.routes["m"].settings,
        pipe.service.gateway.routes["m"].chat,
        pipe.service.gateway.routes["m"].embed,
        pipe.service.gateway.routes["m"].info.__class__("d", "scripted", "gpt-4o-mini", context_window=600),
    )
    with pytest.raises(InvalidRequest, match="exceeds the 600-token window"):
        await pipe.run("small", {"text": "word " * 2000})


async def test_retrieval_rerank_uses_the_collections_reranker(pipeline, project: Path) -> None:  # type: ignore[no-untyped-def]
    pipe, provider, _ = pipeline
    (project / "features" / "reranked.yaml").write_text(
        "prompt: support\nmodel: m\nretrieval: {collection: handbook, top_k: 1, min_score: 0.2, rerank: true}\n"
    )
    pipe.backend.open("handbook", pipe.embedder).set_rerank("llm")
    provider.enqueue("9", "Refunds take five business days [1].")  # the relevance score, then the answer
    result = await pipe.run("reranked", {"question": "How long do refunds take?"})
    assert provider.calls[0].ctx.feature == "rerank" and "Passage:" in provider.calls[0].messages[1]["content"]
    assert result.answer == "Refunds take five business days [1]." and result.sources[0].score == 9.0
