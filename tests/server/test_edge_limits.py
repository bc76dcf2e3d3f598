"""Limits at the edge: a slow body is cut with a 408, embeddings carry at most what OpenAI's do,
and `keel serve` caps open connections (beyond them, uvicorn's own plain-text 503)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import orjson

from keel.server import build_app
from keel.testing import FaultServer
from keel.testing.processes import serve_keel, stop_keel
from tests.conftest import RunningServer, greet_project, make_settings, new_key, read_trace

CONFIG = """
server: {{body_timeout_s: 0.5, max_connections: 3}}
deployments:
  up: {{provider: openai, model: text-embedding-3-small, base_url: "{url}"}}
models:
  up: {{deployments: [up]}}
"""


def test_a_body_that_never_finishes_is_a_408(home: Path, upstream: FaultServer) -> None:
    app = build_app(make_settings(CONFIG.format(url=upstream.base_url)), home)
    key, _ = new_key(home, "acme")
    with RunningServer(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        head = (
            f"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n"
            "content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"model": "up", ')  # …and never the rest
        sock.settimeout(5)
        started = time.monotonic()
        answer = sock.recv(65536).decode()
        assert time.monotonic() - started < 3
        assert answer.startswith("HTTP/1.1 408") and '"code":"request_timeout"' in answer
        trace_id = next(line.split(": ")[1] for line in answer.split("\r\n") if line.startswith("x-keel-trace-id"))
        assert app.service.writer is not None and app.service.writer.flush()
        assert read_trace(home, trace_id).http_status == 408


def test_embeddings_carry_at_most_what_openai_takes(home: Path, upstream: FaultServer) -> None:
    app = build_app(make_settings(CONFIG.format(url=upstream.base_url)), home)
    key, _ = new_key(home, "acme")
    auth = {"authorization": f"Bearer {key}"}
    with RunningServer(app) as server:
        long_one = httpx.post(
            f"{server.base_url}/embeddings", json={"model": "up", "input": ["x" * 40_000]}, headers=auth
        )
        assert long_one.status_code == 400 and long_one.json()["error"]["param"] == "input[0]"
        many = httpx.post(
            f"{server.base_url}/embeddings", json={"model": "up", "input": ["word " * 1500] * 200}, headers=auth
        )
        assert many.status_code == 400 and "a request may carry 300,000" in many.json()["error"]["message"]
        assert upstream.requests == []  # refused before anything was sent


def test_idle_and_slow_header_connections_are_cut_and_never_shut_real_clients_out(
    tmp_path: Path, home: Path, upstream: FaultServer
) -> None:
    """Past the cap, a new connection evicts the oldest one still sending headers; one that never
    finishes its headers is closed at server.header_timeout_s (uvicorn alone holds both forever)."""
    config = tmp_path / "keel.yaml"
    config.write_text(
        CONFIG.format(url=upstream.base_url).replace("max_connections: 3", "max_connections: 3, header_timeout_s: 1")
    )
    served = serve_keel(config, home, {}, no_auth=True)
    _, base = served
    port = int(base.split(":")[2].split("/")[0])
    opened = time.monotonic()
    junk = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
    for sock in junk[3:]:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\n")  # …and never the end of the headers
    try:
        time.sleep(0.2)
        probe = httpx.post(f"{base}/embeddings", json={"model": "up", "input": "hi"}, timeout=5)
        assert probe.status_code == 200, probe.text  # the flood did not lock it out
        closed = 0
        for sock in junk:
            sock.settimeout(5)
            try:
                closed += sock.recv(1) == b""
            except (ConnectionResetError, TimeoutError):
                closed += 1
        assert closed == 6 and time.monotonic() - opened < 3  # evicted at once, or cut at the 1 s deadline
    finally:
        for sock in junk:
            sock.close()
        stop_keel([served])


def never_read(sock: socket.socket, path: str, body: dict[str, object]) -> None:
    """POST a streaming request on ``sock`` with a tiny receive buffer, and never read the answer."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw = orjson.dumps(body)
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(raw)}\r\n\r\n"
    sock.sendall(head.encode() + raw)


SLOT = """
deployments:
  up:
    provider: openai
    model: gpt-4o-mini
    base_url: "{url}"
    max_concurrency: 1
    max_queue: 0
    timeout: {{first_token: 5, total: 1.5}}
models:
  up: {{deployments: [up], retry: {{attempts: 1}}}}
"""


def test_a_client_that_stops_reading_is_cut_at_total_and_frees_its_slot(home: Path) -> None:
    with FaultServer(reply="word " * 400_000) as upstream:  # ~2 MB of stream: more than the socket buffers
        app = build_app(make_settings(SLOT.format(url=upstream.base_url)), home, auth=False)
        with RunningServer(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
            never_read(
                sock,
                "/v1/chat/completions",
                {"model": "up", "stream": True, "messages": [{"role": "user", "content": "go"}]},
            )
            time.sleep(0.5)
            busy = httpx.post(
                f"{server.base_url}/chat/completions",
                json={"model": "up", "messages": [{"role": "user", "content": "hi"}]},
                timeout=10,
            )
            assert busy.status_code == 503  # the one slot is the non-reader's
            started = time.monotonic()
            while True:
                sent = time.monotonic() - started
                freed = httpx.post(
                    f"{server.base_url}/chat/completions",
                    json={"model": "up", "messages": [{"role": "user", "content": "hi"}]},
                    timeout=10,
                )
                if "waiting for a free slot" not in freed.text or sent > 10:
                    break
                time.sleep(0.2)
            # admitted (the mock may still be busy streaming to the cut socket, so not always a 200)
            assert "waiting for a free slot" not in freed.text, freed.text
            assert sent < 6  # cut at total (1.5 s) + 1 s grace, not held


FEATURE_SLOT = (  # the same deployment, with a total no feature stream reaches: the cut is per write
    "project_root: '{root}'\nserver: {{stream_write_timeout_s: 1}}\n" + SLOT.replace("total: 1.5", "total: 60")
)


def test_a_feature_stream_client_that_stops_reading_is_cut_and_frees_its_slot(tmp_path: Path, home: Path) -> None:
    """A feature run may outlast any one deployment's total, so its stream is cut per write: a client
    that has not taken a write for server.stream_write_timeout_s is cut, and the slot freed."""
    root = greet_project(tmp_path / "project")
    with FaultServer(reply="word " * 400_000) as upstream:  # ~2 MB of stream: more than the socket buffers
        app = build_app(make_settings(FEATURE_SLOT.format(root=root, url=upstream.base_url)), home, auth=False)
        with RunningServer(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
            never_read(sock, "/v1/features/greet/run", {"inputs": {"name": "Ada"}, "stream": True})
            started = time.monotonic()
            chat = {"model": "up", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
            while True:
                sent = time.monotonic() - started  # when the slot was free, not when the busy mock answered
                got = httpx.post(f"{server.base_url}/chat/completions", json=chat, timeout=30)
                if "waiting for a free slot" not in got.text or sent > 30:
                    break
                time.sleep(0.1)
            assert "waiting for a free slot" not in got.text, got.text  # the non-reader's slot came back
            assert sent < 20  # cut per write (1 s), not held for the upstream's 60 s
