"""The embedded default: a GGUF model run in-process by llama.cpp (xllamacpp).

Calls block inside llama.cpp, so they run in worker threads; streamed tokens cross back to the
event loop through a queue. Cancelling a stream tells llama.cpp to stop generating.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread

from keel.config.settings import DeploymentSettings, LocalModelSettings
from keel.errors import BadUpstreamResponse, ConfigError, ContextWindowExceeded, UpstreamRejected
from keel.providers.base import ProviderEnv, ProviderInfo
from keel.providers.modelfiles import resolve_model_file
from keel.providers.openai_wire import parse_chunk, parse_response
from keel.types import JSON, ChatChunk, ChatRequest, ChatResponse

_DONE = object()


def _raise_error(body: JSON, name: str) -> None:
    err = body.get("error") or {}
    message = f"{name}: {err.get('message', 'local model error')}"
    if err.get("type") == "exceed_context_size_error":
        raise ContextWindowExceeded(message, provider=name, status=400)
    if int(err.get("code") or 500) < 500:
        raise UpstreamRejected(message, provider=name, status=int(err.get("code") or 400))
    raise BadUpstreamResponse(message, provider=name, status=int(err.get("code") or 500))


class LocalLlamaProvider:
    """Chat (stream and non-stream, JSON-schema constrained) on a local GGUF model."""

    def __init__(self, name: str, settings: DeploymentSettings, env: ProviderEnv) -> None:
        spec = env.local_models.get(settings.model)
        if spec is None:
            raise ConfigError(f"deployments.{name}: unknown local model '{settings.model}'")
        self._spec: LocalModelSettings = spec
        self._home = env.home
        self.info = ProviderInfo(
            deployment=name,
            provider="local",
            model=settings.model,
            context_window=settings.context_window or spec.context_window,
            local=True,
        )
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._server is not None

    def load(self) -> None:
        """Resolve, verify and load the model (idempotent, thread-safe). Blocking."""
        with self._lock:
            if self._server is not None:
                return
            path = resolve_model_file(self.info.model, self._spec, self._home)
            self._server = _start_server(path, self._spec)

    async def _ready(self) -> Any:
        if self._server is None:
            await anyio.to_thread.run_sync(self.load)
        return self._server

    def _payload(self, req: ChatRequest) -> JSON:
        for i, msg in enumerate(req.messages):
            content = msg.get("content") if isinstance(msg, dict) else None
            for part in content if isinstance(content, list) else ():
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    raise UpstreamRejected(
                        f"{self.info.deployment}: the local model takes text only; messages[{i}] has a "
                        f"'{kind}' part (route images and audio to a deployment that takes them)",
                        provider=self.info.deployment,
                        status=400,
                    )
        body = req.to_openai(model=self.info.model)
        body.pop("model", None)
        return body

    async def complete(self, req: ChatRequest) -> ChatResponse:
        server = await self._ready()
        payload = self._payload(req)
        try:
            result = await anyio.to_thread.run_sync(server.handle_chat_completions, payload)
        except ValueError as exc:  # llama.cpp refusing the request's shape
            raise self._rejected(exc) from None
        except Exception as exc:
            raise BadUpstreamResponse(f"{self.info.deployment}: {exc}") from exc
        if not isinstance(result, dict):
            raise BadUpstreamResponse(f"{self.info.deployment}: no answer from the local model")
        if "error" in result:
            _raise_error(result, self.info.deployment)
        result["model"] = self.info.model
        result.pop("timings", None)
        return parse_response(result, self.info.deployment)

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        server = await self._ready()
        payload = self._payload(req)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return cancelled.is_set()  # True tells llama.cpp to stop

        def run() -> None:
            try:
                server.handle_chat_completions(payload, on_chunk)
            except Exception as exc:  # surfaced to the consumer below
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        worker = loop.run_in_executor(None, run)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, ValueError):
                    raise self._rejected(item) from None
                if isinstance(item, Exception):
                    raise BadUpstreamResponse(f"{self.info.deployment}: {item}") from item
                if isinstance(item, dict) and "error" in item:
                    _raise_error(item, self.info.deployment)
                item["model"] = self.info.model
                item.pop("timings", None)
                yield parse_chunk(item, self.info.deployment)
        finally:
            cancelled.set()
            await asyncio.shield(worker)

    def _rejected(self, exc: ValueError) -> UpstreamRejected:
        name = self.info.deployment
        return UpstreamRejected(f"{name}: the local model cannot take this request ({exc})", provider=name, status=400)

    async def aclose(self) -> None:
        self._server = None  # llama.cpp's destructor stops its loop and frees the model


def _start_server(path: Path, spec: LocalModelSettings) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_parallel = spec.n_parallel
    params.n_ctx = spec.context_window * spec.n_parallel  # llama.cpp splits n_ctx across slots
    threads = spec.threads or max(1, os.cpu_count() or 1)
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    params.verbosity = -1
    params.hostnames = ["127.0.0.1"]
    if spec.chat_template:
        params.chat_template = spec.chat_template
    return xllamacpp.Server(params)
