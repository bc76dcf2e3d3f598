"""The embedder retrieval uses: a name, its dimensions, batch embedding and its own token counts."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from keel.rag.index import Vector


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
