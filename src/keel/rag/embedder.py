"""The embedder retrieval uses, as a blocking adapter: indexes run in worker threads (or the CLI),
so they call ``embed(texts)`` and wait. There is one embeddings contract — ``keel.providers.base.
Embedder``, async, registered like providers — and two adapters over it, where sync is needed:

- ``LocalMiniLM``: the embedded default, all-MiniLM-L6-v2 int8 on onnxruntime, in this process (the
  same model class the ``onnx-embed`` provider serves);
- ``GatewayEmbedder``: any alias or deployment ``retrieval.embedder`` names, through the gateway — so
  hosted embeddings get retry, timeout, breaker, fallback, a trace row with their cost, and the
  gateway's error classes (a 429 is ``RateLimited``).
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from keel.config.settings import KeelSettings
from keel.rag.index import Vector
from keel.text import estimate_tokens
from keel.types import CallContext, EmbeddingRequest

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from keel.gateway.service import GatewayService

#: Who retrieval's embedding calls are traced as.
FEATURE = "retrieval"


class TextEmbedder(Protocol):
    name: str
    dims: int

    def embed(self, texts: list[str]) -> Vector: ...

    def token_counts(self, texts: list[str]) -> list[int]: ...


class LocalMiniLM:
    """The embedded default: all-MiniLM-L6-v2 int8 on onnxruntime (see keel.providers.onnx_embed)."""

    name = "all-minilm-l6-v2"
    dims = 384

    def __init__(self) -> None:
        from keel.providers.modelfiles import package_file
        from keel.providers.onnx_embed import MODEL_FILE, TOKENIZER_PATH, MiniLMEmbedder

        self._model = MiniLMEmbedder(package_file(MODEL_FILE), TOKENIZER_PATH)
        self._tokenizer = self._model.tokenizer

    def embed(self, texts: list[str]) -> Vector:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        vectors, _ = self._model.embed(texts)
        return vectors

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens each text costs the model, special tokens excluded, not truncated."""
        if not texts:
            return []
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]

    def close(self) -> None:
        """Nothing to release (the model lives as long as the process)."""


class GatewayEmbedder:
    """Embeddings through the gateway, callable from any thread, the event loop's own included.

    It runs its gateway on a private event loop in a thread of its own (an anyio blocking portal),
    so a blocking caller never waits on a loop it is itself blocking. Vectors are L2-normalised
    (search is cosine). Token counts for chunking are an *estimate* (~4 characters a token): a
    hosted model's tokenizer is not available offline."""

    def __init__(self, settings: KeelSettings, home: Path, alias: str, *, tenant: str | None = None, batch: int = 64):
        from anyio.from_thread import start_blocking_portal

        from keel.gateway.runtime import build_service

        self.alias = alias
        self.name = alias
        self.tenant = tenant
        self.batch = batch
        self._stack = ExitStack()
        self._lock = threading.Lock()
        self._portal: BlockingPortal = self._stack.enter_context(start_blocking_portal())
        self._service: GatewayService = build_service(settings, home)
        self._stack.callback(self._close_service)
        try:
            self.dims = int(self.embed(["dimension probe"]).shape[1])
        except BaseException:
            self.close()
            raise

    def scoped(self, tenant: str) -> GatewayEmbedder:
        """The same gateway, with calls traced (and charged) to ``tenant``."""
        view = object.__new__(GatewayEmbedder)
        view.__dict__.update(self.__dict__)
        view.tenant = tenant
        return view

    def embed(self, texts: list[str]) -> Vector:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch):
            ctx = CallContext(tenant=self.tenant, feature=FEATURE)
            req = EmbeddingRequest(model=self.alias, inputs=texts[start : start + self.batch], ctx=ctx)
            out.extend(self._portal.call(self._service.embed, req).vectors)
        if not out:
            return np.zeros((0, getattr(self, "dims", 0)), dtype=np.float32)
        vectors = np.asarray(out, dtype=np.float32)
        norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.float32(1e-12))
        unit: Vector = (vectors / norms).astype(np.float32)
        return unit

    def token_counts(self, texts: list[str]) -> list[int]:
        return [estimate_tokens(t) for t in texts]

    def _close_service(self) -> None:
        from keel.gateway.runtime import close_service

        self._portal.call(close_service, self._service)

    def close(self) -> None:
        """Flush its traces and stop its thread (a scoped view shares them: close the original)."""
        with self._lock:
            self._stack.close()


def make_embedder(settings: KeelSettings, home: Path) -> LocalMiniLM | GatewayEmbedder:
    """The embedder ``retrieval.embedder`` names — any alias or deployment, through the gateway —
    or the local MiniLM when it names none."""
    name = settings.retrieval.embedder
    if name is None:
        return LocalMiniLM()
    return GatewayEmbedder(settings, home, name)
