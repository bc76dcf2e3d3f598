"""Every client mistake gets the OpenAI error shape with the right status — never a 500."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from keel.errors import UserError
from keel.server import build_app
from keel.store import Store, db_path
from tests.conftest import make_settings
from tests.server.conftest import Gateway


def post(
    gateway: Gateway,
    body: object = None,
    *,
    content: bytes | None = None,
    key: str | None = None,
    path: str = "/chat/completions",
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key or gateway.key}", "content-type": "application/json"}
    return httpx.post(
        f"{gateway.base_url}{path}",
        json=body if content is None else None,
        content=content,
        headers=headers,
        timeout=10,
    )


def assert_error(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code:
        assert err["code"] == code
    if param:
        assert err["param"] == param
    assert "x-keel-trace-id" in r.headers or status in (401, 404, 405, 413)
    return err


MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": MSG}, "model", "'model' must be a non-empty string (got missing)"),
        ({"model": 7, "messages": MSG}, "model", "(got 7)"),
        ({"model": "main"}, "messages", "'messages' must be an array"),
        ({"model": "main", "messages": "hi"}, "messages", "got the string 'hi'"),
        ({"model": "main", "messages": []}, "messages", "with at least 1 item"),
        ({"model": "main", "messages": [{"content": "x"}]}, "messages[0].role", "must be one of"),
        ({"model": "main", "messages": [{"role": "user"}]}, "messages[0].content", "is required"),
        ({"model": "main", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "string or an array"),
        ({"model": "main", "messages": [{"role": "user", "content": [1]}]}, "messages[0].content[0]", "with a 'type'"),
        ({"model": "main", "messages": MSG, "max_tokens": 0}, "max_tokens", "positive integer"),
        ({"model": "main", "messages": MSG, "max_tokens": "9"}, "max_tokens", "positive integer"),
        ({"model": "main", "messages": MSG, "temperature": 3}, "temperature", "from 0 to 2"),
        ({"model": "main", "messages": MSG, "stream": "yes"}, "stream", "true or false"),
        ({"model": "main", "messages": MSG, "n": 3}, "n", "send separate requests"),
        ({"model": "main", "messages": MSG, "max_tokens": 10_000}, "max_tokens", "context window of 8000"),
    ],
)
def test_invalid_chat_requests(gateway: Gateway, body: dict, param: str, fragment: str) -> None:
    err = assert_error(post(gateway, body), 400, param=param)
    assert fragment in err["message"]


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1,2]", b'"text"', '{"model": "caf\xe9'.encode("latin-1")])
def test_malformed_bodies(gateway: Gateway, content: bytes) -> None:
    assert_error(post(gateway, content=content), 400, code="invalid_request")


def test_unknown_model(gateway: Gateway) -> None:
    err = assert_error(post(gateway, {"model": "gpt-17", "messages": MSG}), 404, code="model_not_found", param="model")
    assert "gpt-17" in err["message"] and "main" in err["message"]


def test_oversize_body(gateway: Gateway) -> None:
    huge = {"model": "main", "messages": [{"role": "user", "content": "x" * 70_000}]}
    assert_error(post(gateway, huge), 413, code="payload_too_large")


def test_auth_missing_invalid_and_revoked(gateway: Gateway) -> None:
    r = httpx.post(f"{gateway.base_url}/chat/completions", json={"model": "main", "messages": MSG})
    assert "keel keys create" in assert_error(r, 401, code="invalid_api_key")["message"]
    assert_error(post(gateway, {"model": "main", "messages": MSG}, key="keel-forged"), 401)
    store = Store.at(db_path(gateway.home))
    key, info = store.keys.create("temp")
    assert post(gateway, {"model": "main", "messages": MSG}, key=key).status_code == 200
    assert store.keys.revoke(info.id)  # from another process, in effect: the lookup cache holds it ≤ 1 s
    store.close()
    auth = gateway.server.app.authenticate
    now = auth.clock()
    auth.clock = lambda: now + 1.05  # past the lookup cache, without sleeping
    assert_error(post(gateway, {"model": "main", "messages": MSG}, key=key), 401)
    assert_error(httpx.get(f"{gateway.base_url}/models"), 401)


def test_unknown_route_and_method(gateway: Gateway) -> None:
    assert_error(httpx.get(f"{gateway.base_url}/nothing-here"), 404, code="unknown_url")
    assert_error(httpx.get(f"{gateway.base_url}/chat/completions"), 405, code="method_not_allowed")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "main"}, "input"),
        ({"model": "main", "input": []}, "input"),
        ({"model": "main", "input": [1, 2]}, "input[0]"),
        ({"model": "main", "input": ["ok", ""]}, "input[1]"),
        ({"model": "main", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_invalid_embedding_requests(gateway: Gateway, body: dict, param: str) -> None:
    assert_error(post(gateway, body, path="/embeddings"), 400, param=param)


def test_unicode_survives_the_round_trip(gateway: Gateway) -> None:
    text = "naïve café — 漢字 🚀 \u202e"
    r = post(gateway, {"model": "main", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == f"You said: {text}"


def test_no_auth_is_loopback_only(home: Path) -> None:
    settings = make_settings("{}")
    with pytest.raises(UserError, match="loopback"):
        build_app(settings, home, auth=False, host="0.0.0.0")
