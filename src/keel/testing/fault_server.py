"""A fault-injecting OpenAI-compatible server (plus Anthropic ``/v1/messages``) on loopback.

Plain asyncio HTTP/1.1 with keep-alive and chunked streaming, run in a background thread so
sync and async tests alike can use it. Queue faults with ``inject``; with none queued it answers
normally: an echo of the last user message (or a fixed ``reply``), streamed word by word.

    with FaultServer() as upstream:
        upstream.inject(Fault.status(429, retry_after=0.01), Fault.cut(after_chunks=2))
        client = openai.OpenAI(base_url=upstream.base_url, api_key="x")
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from keel.testing.vectors import hash_vector

FaultKind = Literal["status", "reset", "stall", "cut", "malformed", "content_type", "garbage_chunk"]


@dataclass
class Fault:
    kind: FaultKind
    status: int = 500
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after_chunks: int = 2

    @classmethod
    def status_code(cls, code: int, *, retry_after: float | None = None, body: Any = None) -> Fault:
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        payload = body if body is not None else {"error": {"message": f"injected {code}", "type": "injected"}}
        return cls("status", status=code, body=orjson.dumps(payload), headers=headers)

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before sending anything, then answer normally."""
        return cls("stall", seconds=seconds)

    @classmethod
    def cut(cls, after_chunks: int = 2) -> Fault:
        """Stream ``after_chunks`` content chunks, then drop the connection."""
        return cls("cut", after_chunks=after_chunks)

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def content_type(cls) -> Fault:
        return cls("content_type")

    @classmethod
    def garbage_chunk(cls, after_chunks: int = 0) -> Fault:
        return cls("garbage_chunk", after_chunks=after_chunks)


def _words(text: str) -> int:
    return max(1, len(text.split()))


class FaultServer:
    def __init__(
        self,
        *,
        reply: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        chunk_delay: float = 0.0,
        model: str = "fault-model",
        resume_overlap: int = 0,
        latency: float = 0.0,
    ) -> None:
        """With a fixed ``reply`` the server acts as a temperature-0 model: asked to continue a
        partial answer (a trailing assistant prefix, or one followed by a request to continue), it
        answers with the rest of ``reply``, first repeating ``resume_overlap`` words of the prefix
        (as real models sometimes do at a seam)."""
        self.reply = reply
        self.resume_overlap = resume_overlap
        self.host = host
        self.port = port
        self.chunk_delay = chunk_delay
        self.latency = latency  # seconds every answer waits before its first byte (a model's think time)
        self.model = model
        self.faults: deque[Fault] = deque()
        self.requests: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()

    # -- control -------------------------------------------------------------------------------
    def inject(self, *faults: Fault) -> FaultServer:
        with self._lock:
            self.faults.extend(faults)
        return self

    def _pop(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def chat_calls(self) -> int:
        return sum(1 for path, _ in self.requests if path.endswith("/chat/completions"))

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._run, name="fault-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault server did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._server:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._conn, self.host, self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._server.wait_closed())
        self._loop.close()

    async def serve_forever(self) -> None:
        """Run in the current loop (for the bench's standalone upstream process)."""
        self._server = await asyncio.start_server(self._conn, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        async with self._server:
            await self._server.serve_forever()

    # -- HTTP ----------------------------------------------------------------------------------
    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = raw.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                if not await self._dispatch(method, path, body, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort() if writer.transport.is_closing() else writer.close()

    @staticmethod
    def _send(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
        writer.write(head.encode("latin-1") + body)

    async def _dispatch(self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter) -> bool:
        path = path.split("?", 1)[0]
        if method == "GET" and path.endswith("/models"):
            data = {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "fault-server"}]}
            self._send(writer, 200, orjson.dumps(data))
            return True
        try:
            req = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            self._send(writer, 400, b'{"error":{"message":"bad json","type":"invalid_request_error"}}')
            return True
        if path == "/_faults":
            self.inject(*[Fault(**f) for f in req])
            self._send(writer, 200, b"{}")
            return True
        self.requests.append((path, req))
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._pop()
        if fault is not None:
            if fault.kind == "reset":
                writer.transport.abort()
                return False
            if fault.kind == "status":
                self._send(writer, fault.status, fault.body or b"{}", headers=fault.headers)
                return True
            if fault.kind == "stall":
                await asyncio.sleep(fault.seconds)
            if fault.kind == "malformed":
                self._send(writer, 200, b'{"id": "x", "choices": [')
                return True
            if fault.kind == "content_type":
                self._send(writer, 200, b"<html>a proxy error page</html>", ctype="text/html")
                return True
        if path.endswith("/embeddings"):
            inputs = req.get("input") or []
            inputs = [inputs] if isinstance(inputs, str) else inputs
            payload: dict[str, Any] = {
                "object": "list",
                "model": req.get("model"),
                "data": [
                    {"object": "embedding", "index": i, "embedding": hash_vector(str(t))} for i, t in enumerate(inputs)
                ],
                "usage": {"prompt_tokens": sum(_words(str(t)) for t in inputs), "total_tokens": 0},
            }
            self._send(writer, 200, orjson.dumps(payload))
            return True
        anthropic = path.endswith("/messages")
        text = self._answer(req, anthropic)
        prompt_tokens = _words(orjson.dumps(req.get("messages") or []).decode())
        if req.get("stream"):
            events = (self._anthropic_events if anthropic else self._openai_events)(req, text, prompt_tokens)
            await self._stream(writer, events, fault)
            return fault is None or fault.kind not in ("cut",)
        body = (self._anthropic_body if anthropic else self._openai_body)(req, text, prompt_tokens)
        self._send(writer, 200, orjson.dumps(body))
        return True

    def _answer(self, req: dict[str, Any], anthropic: bool) -> str:
        if self.reply is not None:
            return self._rest_of_reply(req.get("messages") or [], self.reply)
        for msg in reversed(req.get("messages") or []):
            if msg.get("role") == "user":
                content = msg.get("content")
                if isinstance(content, list):
                    content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
                return f"You said: {content}"
        return "Hello."

    def _rest_of_reply(self, messages: list[Any], reply: str) -> str:
        tail = messages[-2:] if len(messages) >= 2 and messages[-1].get("role") == "user" else messages[-1:]
        partial = next((m for m in tail if m.get("role") == "assistant" and isinstance(m.get("content"), str)), None)
        prefix = (partial or {}).get("content", "").rstrip()
        if not prefix or not reply.startswith(prefix):
            return reply
        repeated = " ".join(prefix.split(" ")[-self.resume_overlap :]) if self.resume_overlap else ""
        rest = reply[len(prefix) :]
        return (" " + repeated if repeated else "") + rest if rest.startswith(" ") else repeated + rest

    def _openai_body(self, req: dict[str, Any], text: str, prompt_tokens: int) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-fault-{time.time_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model") or self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": _words(text),
                "total_tokens": prompt_tokens + _words(text),
            },
        }

    def _openai_events(self, req: dict[str, Any], text: str, prompt_tokens: int) -> list[bytes]:
        cid, model, created = f"chatcmpl-fault-{time.time_ns()}", req.get("model") or self.model, int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            body: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else [],
                **extra,
            }
            return b"data: " + orjson.dumps(body) + b"\n\n"

        words = text.split(" ")
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        events.append(chunk({}, "stop"))
        if (req.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(words),
                "total_tokens": prompt_tokens + len(words),
            }
            body: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            events.append(b"data: " + orjson.dumps(body) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return events

    def _anthropic_body(self, req: dict[str, Any], text: str, prompt_tokens: int) -> dict[str, Any]:
        return {
            "id": f"msg_{time.time_ns()}",
            "type": "message",
            "role": "assistant",
            "model": req.get("model"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": prompt_tokens, "output_tokens": _words(text)},
        }

    def _anthropic_events(self, req: dict[str, Any], text: str, prompt_tokens: int) -> list[bytes]:
        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\n".encode() + b"data: " + orjson.dumps({"type": name, **data}) + b"\n\n"

        words = text.split(" ")
        start: dict[str, Any] = {
            "id": f"msg_{time.time_ns()}",
            "type": "message",
            "role": "assistant",
            "model": req.get("model"),
            "content": [],
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
        }
        events = [
            event("message_start", {"message": start}),
            event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            event("ping", {}),
        ]
        events += [
            event(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w if i == 0 else " " + w}}
            )
            for i, w in enumerate(words)
        ]
        events += [
            event("content_block_stop", {"index": 0}),
            event("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": len(words)}}),
            event("message_stop", {}),
        ]
        return events

    async def _stream(self, writer: asyncio.StreamWriter, events: list[bytes], fault: Fault | None) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        content_sent = 0
        for event in events:
            is_content = (b'"content":"' in event and b'"content":""' not in event) or b"text_delta" in event
            if fault is not None and is_content and content_sent >= fault.after_chunks:
                if fault.kind == "cut":
                    await writer.drain()
                    writer.transport.abort()
                    return
                if fault.kind == "garbage_chunk":
                    event = b"data: {not json\n\n"
                    fault = None
            writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            if is_content:
                content_sent += 1
                if self.chunk_delay:
                    await writer.drain()
                    await asyncio.sleep(self.chunk_delay)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
