"""The embedded default, exercised for real: SmolLM2 on llama.cpp and MiniLM on onnxruntime."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from keel.config.defaults import BUILTIN_LOCAL_MODELS, SMOLLM
from keel.config.settings import DeploymentSettings, LocalModelSettings
from keel.errors import ContextWindowExceeded, UpstreamRejected
from keel.providers.base import ProviderEnv
from keel.providers.local_llama import LocalLlamaProvider
from keel.providers.onnx_embed import MiniLMEmbedder, OnnxEmbedProvider
from keel.testing.provider_conformance import ProviderConformance
from keel.types import ChatRequest, EmbeddingRequest


@pytest.fixture(scope="module")
def smollm(tmp_path_factory: pytest.TempPathFactory) -> LocalLlamaProvider:
    spec = LocalModelSettings.model_validate({**BUILTIN_LOCAL_MODELS[SMOLLM], "context_window": 1024})
    env = ProviderEnv(home=tmp_path_factory.mktemp("home"), local_models={SMOLLM: spec})
    return LocalLlamaProvider("local", DeploymentSettings(provider="local", model=SMOLLM), env)


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(model="local", messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


async def test_local_chat_reports_usage_and_its_model(smollm: LocalLlamaProvider) -> None:
    response = await smollm.complete(ask("What is 2 + 2?", max_tokens=12))
    assert response.text.strip()
    assert response.model == SMOLLM and response.body["model"] == SMOLLM
    assert response.usage.input_tokens > 5 and 0 < response.usage.output_tokens <= 12
    assert response.body["choices"][0]["finish_reason"] in ("stop", "length")


async def test_local_stream_yields_tokens_then_usage(smollm: LocalLlamaProvider) -> None:
    chunks = [c async for c in smollm.stream(ask("Name three colours.", max_tokens=16, stream=True))]
    assert sum(1 for c in chunks if c.text) >= 2
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens > 0


async def test_local_stream_can_be_abandoned(smollm: LocalLlamaProvider) -> None:
    stream = smollm.stream(ask("Count from one to one hundred.", max_tokens=200, stream=True))
    got = 0
    async for chunk in stream:
        got += bool(chunk.text)
        if got == 3:
            break
    await stream.aclose()  # tells llama.cpp to stop; the next call must still work
    assert (await smollm.complete(ask("Hi", max_tokens=4))).usage.output_tokens > 0


async def test_local_context_window_exceeded(smollm: LocalLlamaProvider) -> None:
    with pytest.raises(ContextWindowExceeded, match="context"):
        await smollm.complete(ask("word " * 3000, max_tokens=4))


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_content_part_the_local_model_lacks_is_a_400_not_a_crash(
    smollm: LocalLlamaProvider, streamed: bool
) -> None:
    parts = [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]  # found by schemathesis
    req = ChatRequest(model="local", messages=[{"role": "user", "content": parts}], max_tokens=4, stream=streamed)
    with pytest.raises(UpstreamRejected, match=r"takes text only; messages\[0\] has a 'input_audio' part") as caught:
        if streamed:
            _ = [c async for c in smollm.stream(req)]
        else:
            await smollm.complete(req)
    assert caught.value.status == 400 and not caught.value.retryable


async def test_local_json_schema_is_grammar_constrained(smollm: LocalLlamaProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    # greedy and bounded: a sampled run could spend every token on a long name and be cut off mid-JSON
    params = {"response_format": fmt, "temperature": 0}
    response = await smollm.complete(ask("Invent a person.", max_tokens=100, params=params))
    assert response.body["choices"][0]["finish_reason"] == "stop", response.text
    data = orjson.loads(response.text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_the_default_model_verifies_against_its_published_hash(tmp_path: Path) -> None:
    from keel.config.defaults import QWEN
    from keel.providers.modelfiles import resolve_model_file

    spec = LocalModelSettings.model_validate(BUILTIN_LOCAL_MODELS[QWEN])
    path = resolve_model_file(QWEN, spec, tmp_path)
    assert path.stat().st_size > 300_000_000 and path.with_suffix(".gguf.verified").exists()


async def test_minilm_embeddings_are_unit_vectors_that_mean_something() -> None:
    provider = OnnxEmbedProvider("minilm", DeploymentSettings(provider="onnx-embed", model="all-minilm-l6-v2"))
    texts = ["How do I rotate my API key?", "Steps to change an API key", "Bananas are rich in potassium"]
    response = await provider.embed(EmbeddingRequest(model="e", inputs=texts))
    vectors = np.array(response.vectors)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > 0.6 > vectors[0] @ vectors[2]
    assert response.usage.input_tokens > 10


def test_minilm_truncates_and_batches_without_changing_results() -> None:
    model = OnnxEmbedProvider("m", DeploymentSettings(provider="onnx-embed", model="all-minilm-l6-v2")).load()
    assert isinstance(model, MiniLMEmbedder)
    long_text = "retrieval " * 2000
    vectors, tokens = model.embed([long_text, "short", "ünïcödé ✓ 漢字"])
    assert tokens <= 256 + 3 + 16
    alone, _ = model.embed(["short"])
    assert np.allclose(vectors[1], alone[0], atol=1e-5)  # padding in a batch does not change a vector


async def test_a_small_embeddings_request_waits_one_turn_not_a_whole_big_one() -> None:
    """The local embedder works in turns of ``chunk`` inputs, first come first served, so one huge
    request cannot hold the model while a one-input request waits (issue 14)."""
    provider = OnnxEmbedProvider("m", DeploymentSettings(provider="onnx-embed", model="all-minilm-l6-v2"))
    model = provider.load()
    provider.chunk = 4
    texts = [f"document {i} about refunds and returns " * 8 for i in range(48)]  # 12 turns
    finished: list[str] = []
    running, most = [0], [0]
    embed_batch = model.embed

    def counted(batch: list[str]) -> Any:
        running[0] += 1
        most[0] = max(most[0], running[0])
        try:
            return embed_batch(batch)
        finally:
            running[0] -= 1

    model.embed = counted  # type: ignore[method-assign]

    async def embed(name: str, inputs: list[str]) -> list[list[float]]:
        response = await provider.embed(EmbeddingRequest(model="m", inputs=inputs))
        finished.append(name)
        return response.vectors

    big = asyncio.create_task(embed("big", texts))
    await asyncio.sleep(0.05)  # the big one has begun its turns
    small = await embed("small", ["where is my refund"])
    whole = await big
    assert finished == ["small", "big"]
    assert most[0] == 1  # one turn at a time: onnxruntime already uses every core
    assert len(small) == 1 and len(whole) == 48
    alone, _ = embed_batch(texts[-4:])
    assert np.allclose(np.asarray(whole[-4:]), alone, atol=1e-5)  # turns do not change the vectors


def test_long_inputs_go_in_smaller_batches_with_the_same_vectors() -> None:
    model = OnnxEmbedProvider("m", DeploymentSettings(provider="onnx-embed", model="all-minilm-l6-v2")).load()
    texts = ["refund policy " * 120] * 5 + ["short one"] * 3  # ~240 tokens: one at a time under the attention bound
    together, _ = model.embed(texts)
    one_by_one = np.vstack([model.embed([t])[0] for t in texts])
    assert np.allclose(together, one_by_one, atol=1e-5)


@pytest.mark.slow
class TestLocalProviderConformance(ProviderConformance):
    """The embedded default passes the suite every adapter does."""

    @pytest.fixture
    def provider(self, smollm: LocalLlamaProvider) -> LocalLlamaProvider:
        return smollm
