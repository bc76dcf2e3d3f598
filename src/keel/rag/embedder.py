"""The embedder retrieval uses: a name, its dimensions, batch embedding and its own token counts."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from keel.config.settings import KeelSettings
from keel.errors import ConfigError
from keel.rag.index import Vector
from keel.text import estimate_tokens


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
        from keel.providers.onnx_embed import MODEL_FILE, TOKENIZER_FILE, MiniLMEmbedder

        self._model = MiniLMEmbedder(package_file(MODEL_FILE), package_file(TOKENIZER_FILE))
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


class HTTPEmbedder:
    """Embeddings from any OpenAI-compatible ``/embeddings`` endpoint (a deployment in keel.yaml).

    Vectors are L2-normalised (search is cosine). Token counts for chunking are an *estimate*
    (~4 characters a token): a hosted model's tokenizer is not available offline."""

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        *,
        headers: dict[str, str] | None = None,
        batch: int = 64,
        timeout: float = 60.0,
    ) -> None:
        import httpx

        self.name = name
        self.model = model
        self.batch = batch
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers or {}, timeout=timeout)
        self.dims = int(self.embed(["dimension probe"]).shape[1])

    def embed(self, texts: list[str]) -> Vector:
        from keel.errors import BadUpstreamResponse, UpstreamUnavailable

        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch):
            batch = texts[start : start + self.batch]
            try:
                response = self._client.post("/embeddings", json={"model": self.model, "input": batch})
            except Exception as exc:  # httpx's transport errors
                raise UpstreamUnavailable(f"{self.name}: embeddings request failed ({type(exc).__name__})") from None
            if response.status_code >= 400:
                raise UpstreamUnavailable(
                    f"{self.name}: embeddings answered {response.status_code}: {response.text[:200]}"
                )
            try:
                items = sorted(response.json()["data"], key=lambda d: d["index"])
                out.extend([float(x) for x in item["embedding"]] for item in items)
            except (KeyError, TypeError, ValueError):
                raise BadUpstreamResponse(f"{self.name}: embeddings in an unknown shape") from None
        if not out:
            return np.zeros((0, getattr(self, "dims", 0)), dtype=np.float32)
        vectors = np.asarray(out, dtype=np.float32)
        norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.float32(1e-12))
        unit: Vector = (vectors / norms).astype(np.float32)
        return unit

    def token_counts(self, texts: list[str]) -> list[int]:
        return [estimate_tokens(t) for t in texts]


def make_embedder(settings: KeelSettings) -> TextEmbedder:
    """The embedder ``retrieval.embedder`` names: a deployment (openai-compatible or onnx-embed)."""
    name = settings.retrieval.embedder
    if name is None:
        return LocalMiniLM()
    deployment = settings.deployments[name]
    if deployment.provider == "onnx-embed":
        return LocalMiniLM()
    if deployment.provider != "openai" or not deployment.base_url:
        raise ConfigError(f"retrieval.embedder '{name}' must be an openai-compatible deployment with a base_url")
    headers = dict(deployment.headers)
    if deployment.api_key is not None:
        headers["authorization"] = f"Bearer {deployment.api_key.resolve()}"
    return HTTPEmbedder(f"{name}:{deployment.model}", deployment.base_url, deployment.model, headers=headers)
