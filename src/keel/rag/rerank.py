"""Reranking the fused top-N: a one-method protocol and three implementations.

- ``none``: keep the fused order (published results show reranking can hurt some corpora).
- ``cross-encoder``: an ONNX cross-encoder with its ``tokenizer.json`` (no pretrained one ships
  offline here; load your own, or a sentence-transformers model name with downloads allowed).
- ``llm``: the gateway scores (query, passage) pairs 0–10 for the top few — traced and costed.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, cast

import anyio.to_thread
import numpy as np

from keel.errors import ConfigError, KeelError
from keel.gateway.service import GatewayService
from keel.rag.collection import Found
from keel.rag.plugins import RERANKERS
from keel.types import CallContext, ChatRequest


class Reranker(Protocol):
    name: str

    async def scores(self, query: str, passages: list[str]) -> list[float | None]:
        """A relevance score per passage (higher is better); None where it could not score."""
        ...


class NoReranker:
    name = "none"

    async def scores(self, query: str, passages: list[str]) -> list[float | None]:
        return [None] * len(passages)


class CrossEncoderReranker:
    """Runs an ONNX cross-encoder on (query, passage) pairs: inputs ``input_ids``, ``attention_mask``
    (and ``token_type_ids`` if the model takes them); output logits, the first column is relevance."""

    name = "cross-encoder"

    def __init__(self, model: Path, tokenizer: Path, *, max_tokens: int = 512, batch: int = 16) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if not model.is_file() or not tokenizer.is_file():
            raise ConfigError(f"cross-encoder files not found: {model} and {tokenizer}")
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()  # some tokenizer.json files pad to a fixed length; we pad per batch
        self.tokenizer.enable_truncation(max_length=max_tokens)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.batch = batch

    @classmethod
    def from_sentence_transformers(cls, name: str, *, allow_download: bool = False) -> CrossEncoderReranker:
        """Hub-style loading: only with ``allow_download`` (offline machines cannot fetch models)."""
        if not allow_download:
            raise ConfigError(
                f"loading cross-encoder '{name}' needs a download; pass allow_download=True or give "
                "an ONNX file and tokenizer.json"
            )
        raise ConfigError("install sentence-transformers and export the model to ONNX, then load it by path")

    def _score(self, query: str, passages: list[str]) -> list[float | None]:
        out: list[float | None] = []
        for start in range(0, len(passages), self.batch):
            pairs = self.tokenizer.encode_batch([(query, p) for p in passages[start : start + self.batch]])
            width = max(len(e.ids) for e in pairs)
            ids = np.zeros((len(pairs), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for row, enc in enumerate(pairs):
                n = len(enc.ids)
                ids[row, :n], mask[row, :n], types[row, :n] = enc.ids, enc.attention_mask, enc.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feeds["token_type_ids"] = types
            logits = np.asarray(self.session.run(None, feeds)[0], dtype=np.float64)
            out.extend(float(x) for x in logits.reshape(len(pairs), -1)[:, 0])
        return out

    async def scores(self, query: str, passages: list[str]) -> list[float | None]:
        return await anyio.to_thread.run_sync(self._score, query, passages)


_NUMBER = re.compile(r"\b(10|[0-9])(?:\.\d+)?\b")
PROMPT = (
    "Rate how well the passage answers the question, from 0 (unrelated) to 10 (answers it fully). "
    "Reply with the number only."
)


class LLMReranker:
    name = "llm"

    def __init__(self, service: GatewayService, model: str, *, concurrency: int = 4, tenant: str | None = None) -> None:
        self.service = service
        self.model = model
        self.tenant = tenant  # whose budget and traces the judging calls count in
        self.limit = asyncio.Semaphore(concurrency)

    async def _one(self, query: str, passage: str, ctx: CallContext) -> float | None:
        messages = [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": f"Question: {query}\n\nPassage: {passage[:2000]}\n\nScore:"},
        ]
        async with self.limit:
            try:
                response = await self.service.chat(
                    ChatRequest(
                        model=self.model,
                        messages=messages,
                        max_tokens=4,
                        params={"temperature": 0},
                        ctx=CallContext(tenant=ctx.tenant, user=ctx.user, feature="rerank"),
                    )
                )
            except KeelError:
                return None  # a failed judgement leaves the passage where fusion put it
        match = _NUMBER.search(response.text)
        return float(match.group(1)) if match else None

    async def scores(self, query: str, passages: list[str]) -> list[float | None]:
        ctx = CallContext(tenant=self.tenant)
        return list(await asyncio.gather(*(self._one(query, p, ctx) for p in passages)))


async def rerank(reranker: Reranker, query: str, found: list[Found], *, top_n: int = 10) -> list[Found]:
    """Reorder the first ``top_n`` by the reranker's scores; unscored ones keep their fused order
    below scored ones of equal standing. The rest follow unchanged."""
    head, tail = found[:top_n], found[top_n:]
    scores = await reranker.scores(query, [f.text for f in head])
    if all(s is None for s in scores):
        return found
    floor = min(s for s in scores if s is not None) - 1.0
    keyed = [s if s is not None else floor for s in scores]
    ranked = sorted(range(len(head)), key=lambda i: (-keyed[i], i))
    final = [score if score is not None else hit.score for score, hit in zip(scores, head, strict=True)]
    return [replace(head[i], score=final[i]) for i in ranked] + tail


@dataclass(frozen=True, slots=True)
class RerankEnv:
    """What a reranker factory may use besides its own argument."""

    service: GatewayService | None
    default_model: str
    tenant: str | None = None  # whose budget and traces model calls count in


def no_reranker(arg: str, env: RerankEnv) -> Reranker:
    return NoReranker()


def llm_reranker(arg: str, env: RerankEnv) -> Reranker:
    if env.service is None:
        raise ConfigError("the llm reranker needs the gateway")
    return LLMReranker(env.service, arg or env.default_model, tenant=env.tenant)


def cross_encoder_reranker(arg: str, env: RerankEnv) -> Reranker:
    model, _, tokenizer = arg.partition(":")
    return CrossEncoderReranker(Path(model), Path(tokenizer))


def make_reranker(spec: str, service: GatewayService | None, default_model: str, tenant: str | None = None) -> Reranker:
    """Build the reranker a collection names (see ``Collection.set_rerank``), from the registry."""
    kind, _, arg = spec.partition(":")
    factory = RERANKERS.get(kind or "none", where="rerank")
    return cast(Reranker, factory(arg, RerankEnv(service, default_model, tenant)))


def candidate_pool(top_k: int, spec: str) -> int:
    """How many hits to retrieve: twice ``top_k`` when a reranker will reorder them."""
    return top_k * 2 if spec != "none" else top_k


async def rerank_top(
    spec: str,
    query: str,
    found: list[Found],
    top_k: int,
    *,
    service: GatewayService | None,
    default_model: str,
    tenant: str | None = None,
) -> list[Found]:
    """Apply the reranker a spec names (if any) to retrieved hits and keep the best ``top_k``; an
    LLM reranker's calls are the ``tenant``'s."""
    if spec == "none":
        return found[:top_k]
    reranker = make_reranker(spec, service, default_model, tenant)
    return (await rerank(reranker, query, found, top_n=len(found)))[:top_k]
