from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

from keel.errors import ConfigError, UpstreamRejected, UserError
from keel.gateway.runtime import close_service
from keel.providers.onnx_embed import TOKENIZER_PATH
from keel.rag import Collection, Found
from keel.rag.embedder import LocalMiniLM
from keel.rag.rerank import CrossEncoderReranker, LLMReranker, NoReranker, make_reranker, rerank
from keel.store import connect
from tests.conftest import scripted_service


def tiny_cross_encoder(path: Path, boosted_word: str) -> tuple[Path, Path]:
    """A real ONNX cross-encoder graph: relevance = how often ``boosted_word`` occurs in the passage
    (token type 1). Small, deterministic, and loaded through the real code path."""
    tokenizer_path = TOKENIZER_PATH
    token = Tokenizer.from_file(str(tokenizer_path)).token_to_id(boosted_word)
    assert token is not None, f"{boosted_word!r} must be a single token for this test"
    weights = np.zeros(30522, dtype=np.float32)
    weights[token] = 1.0
    nodes = [
        helper.make_node("Gather", ["W", "input_ids"], ["per_token"]),
        helper.make_node("Cast", ["token_type_ids"], ["types"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["per_token", "types"], ["passage_only"]),
        helper.make_node("Mul", ["passage_only", "mask"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axes"], ["logits"], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-cross-encoder",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"])
            for n in ("input_ids", "attention_mask", "token_type_ids")
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path, tokenizer_path


def found(text: str, i: int) -> Found:
    return Found(f"d#{i}", "d", "d.md", "", [], None, 0, len(text), text, 1.0 / (i + 1), None, None)


async def test_cross_encoder_reorders_by_its_scores(tmp_path: Path) -> None:
    model, tokenizer = tiny_cross_encoder(tmp_path / "ce.onnx", "money")
    reranker = CrossEncoderReranker(model, tokenizer)
    hits = [
        found("Invoices are monthly and long winded.", 0),
        found("Money, more money, money.", 1),
        found("Some money.", 2),
        found("Unrelated tail about money money money money.", 3),
    ]
    out = await rerank(reranker, "where does the money go?", hits, top_n=3)
    assert [h.chunk_id for h in out] == ["d#1", "d#2", "d#0", "d#3"]  # the tail stays where it was
    assert out[0].score == 3.0 and out[1].score == 1.0 and out[2].score == 0.0


async def test_llm_reranker_scores_through_the_gateway(home: Path) -> None:
    service, provider = scripted_service(home)
    provider.enqueue("2", "9", "no idea", UpstreamRejected("refused"))  # not retryable: a failed judgement
    reranker = LLMReranker(service, "m", concurrency=1)
    hits = [found(f"passage {i}", i) for i in range(4)]
    out = await rerank(reranker, "q", hits, top_n=4)
    assert [h.chunk_id for h in out] == ["d#1", "d#0", "d#2", "d#3"]  # unscored keep fused order, below
    assert all(call.ctx.feature == "rerank" for call in provider.calls)
    assert "Question: q" in provider.calls[0].messages[1]["content"]
    await close_service(service)


async def test_none_keeps_the_fused_order() -> None:
    hits = [found(f"p{i}", i) for i in range(3)]
    assert await rerank(NoReranker(), "q", hits) == hits


def test_reranker_specs_are_validated(tmp_path: Path) -> None:
    col = Collection.create(connect(tmp_path / "k.db"), "docs", LocalMiniLM())
    assert col.rerank == "none"
    col.set_rerank("llm:fast")
    assert Collection(col.conn, "docs", col.embedder).rerank == "llm:fast"
    with pytest.raises(UserError, match=r"unknown reranker 'magic'.*\(cross-encoder, llm, none\)$"):
        col.set_rerank("magic")
    with pytest.raises(UserError, match="did you mean 'cross-encoder'"):
        col.set_rerank("crossencoder:a.onnx:b.json")
    with pytest.raises(UserError, match=r"cross-encoder:<model\.onnx>"):
        col.set_rerank("cross-encoder:only-a-model.onnx")
    with pytest.raises(ConfigError, match="not found"):
        make_reranker("cross-encoder:/nope.onnx:/nope.json", None, "m")
    with pytest.raises(ConfigError, match="needs the gateway"):
        make_reranker("llm", None, "m")
    with pytest.raises(ConfigError, match="download"):
        CrossEncoderReranker.from_sentence_transformers("cross-encoder/ms-marco-MiniLM-L-6-v2")
