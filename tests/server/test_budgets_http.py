"""Budgets and rate limits at the HTTP edge: concurrent calls never jointly pass a budget, refusals
are 429s in the OpenAI error shape with Retry-After, and a Redis that is down fails as configured."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import openai
import pytest

from keel.cost.prices import PriceTable
from keel.server import build_app
from keel.store import connect, db_path
from keel.testing import Fault, FaultServer
from keel.testing.redis_server import free_port
from keel.types import Usage
from tests.conftest import RunningServer, make_settings, new_key

BODY = {"model": "up", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000}
WORST = PriceTable.load().cost("gpt-4o-mini", Usage(input_tokens=5, output_tokens=1000))  # what admission reserves


def serve(home: Path, upstream: FaultServer, extra: str) -> tuple[RunningServer, str]:
    settings = make_settings(
        f"deployments:\n  up: {{provider: openai, model: gpt-4o-mini, base_url: '{upstream.base_url}'}}\n"
        f"models:\n  up: {{deployments: [up], retry: {{attempts: 1}}}}\n{extra}"
    )
    key, _ = new_key(home, "acme")
    return RunningServer(build_app(settings, home)), key


@pytest.fixture(params=["embedded", "redis"])
def ledger_yaml(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "embedded":
        return ""
    monkeypatch.setenv("KEEL_TEST_REDIS", request.getfixturevalue("redis_url"))
    return "ledger: {backend: redis, redis_url: {$env: KEEL_TEST_REDIS}}\n"


def test_fifty_concurrent_calls_against_a_budget_for_ten(home: Path, upstream: FaultServer, ledger_yaml: str) -> None:
    assert WORST is not None
    upstream.inject(*[Fault.stall(0.3)] * 50)  # every call is still in flight when the others arrive
    budget = f"budgets:\n  acme-daily: {{match: {{tenant: acme}}, usd: {WORST * 10.5:.9f}}}\n"
    server, key = serve(home, upstream, budget + ledger_yaml)

    async def burst(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {key}"}) as client:
            return await asyncio.gather(*(client.post(f"{base}/chat/completions", json=BODY) for _ in range(50)))

    with server:
        replies = asyncio.run(burst(server.base_url))
    ok = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 429]
    assert len(ok) == 10 and len(refused) == 40, [r.status_code for r in replies]
    error = refused[0].json()["error"]
    assert error["code"] == "budget_exceeded" and error["type"] == "insufficient_quota"
    assert "budget 'acme-daily' is exhausted" in error["message"] and "It resets at" in error["message"]
    assert int(refused[0].headers["retry-after"]) >= 1
    spent = sum(
        r.json()["usage"]["prompt_tokens"] * 0.15e-6 + r.json()["usage"]["completion_tokens"] * 0.6e-6 for r in ok
    )
    assert spent <= WORST * 10.5


def test_after_settling_the_real_cost_more_calls_fit(home: Path, upstream: FaultServer) -> None:
    assert WORST is not None
    server, key = serve(home, upstream, f"budgets:\n  d: {{per: user, usd: {WORST * 2.5:.9f}, alerts: [0.5]}}\n")
    client = openai.OpenAI(api_key=key, max_retries=0)
    with server:
        client.base_url = httpx.URL(server.base_url + "/")
        answers = [
            client.chat.completions.create(
                model="up",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=1000,
                extra_headers={"x-keel-user": "u1"},
            )
            for _ in range(6)
        ]  # each reserves 1000 output tokens but uses a few: settled, they leave room for the next
        assert all(a.choices[0].message.content for a in answers)
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="up", messages=[{"role": "user", "content": "x" * 3000}],
                                           max_tokens=16000, extra_headers={"x-keel-user": "u1"})  # fmt: skip
        assert info.value.code == "budget_exceeded" and "for user u1" in info.value.message


def test_rate_limits_per_key_say_when_to_retry(home: Path, upstream: FaultServer, ledger_yaml: str) -> None:
    server, key = serve(home, upstream, "limits:\n  per-key: {per: key, rpm: 3}\n" + ledger_yaml)
    with server:
        auth = {"authorization": f"Bearer {key}"}
        codes = [
            httpx.post(f"{server.base_url}/chat/completions", json=BODY, headers=auth).status_code for _ in range(3)
        ]
        over = httpx.post(f"{server.base_url}/chat/completions", json=BODY, headers=auth)
    assert codes == [200, 200, 200] and over.status_code == 429
    assert over.json()["error"]["code"] == "rate_limit_exceeded" and 1 <= int(over.headers["retry-after"]) <= 60
    assert "rate limit 'per-key' for key " in over.json()["error"]["message"]


@pytest.mark.parametrize(("mode", "status"), [("closed", 503), ("open", 200)])
def test_a_redis_that_is_down_fails_as_configured(
    home: Path,
    upstream: FaultServer,
    mode: str,
    status: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEEL_TEST_REDIS", f"redis://127.0.0.1:{free_port()}/0")
    ledger = f"ledger: {{backend: redis, redis_url: {{$env: KEEL_TEST_REDIS}}, on_error: {mode}}}\n"
    server, key = serve(home, upstream, "budgets:\n  b: {usd: 1}\n" + ledger)
    with server, caplog.at_level("WARNING", logger="keel.budgets"):
        r = httpx.post(f"{server.base_url}/chat/completions", json=BODY, headers={"authorization": f"Bearer {key}"})
    assert r.status_code == status, r.text
    if mode == "closed":
        assert r.json()["error"]["code"] == "ledger_unavailable" and "unreachable" in r.json()["error"]["message"]
        assert "127.0.0.1" not in r.text and "redis://" not in r.text  # where it lives is for the log
        assert "127.0.0.1" in caplog.text
    assert f"failing {mode}" in caplog.text


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("budgets:\n  b: {usd: -1}\n", "greater than 0"),
        ("budgets:\n  b: {usd: 1e12}\n", "less than or equal to 10000000"),
        ("budgets:\n  b: {period: week, usd: 1}\n", "'day' or 'month'"),
        ("budgets:\n  b: {per: user}\n", "needs usd or tokens"),
        ("budgets:\n  b: {usd: 1, alerts: [1.5]}\n", "shares of the budget"),
        ("budgets:\n  a: {per: user, usd: 1}\n  b: {per: user, usd: 2}\n", "the same calls over the same period"),
        ("budgets:\n  b: {per: user, match: {user: u1}, usd: 1}\n", "contradict"),
        ("limits:\n  l: {per: key}\n", "needs rpm or tpm"),
        ("ledger: {backend: redis}\n", "the redis ledger needs redis_url"),
    ],
)
def test_absurd_budgets_are_config_errors(yaml: str, message: str) -> None:
    from keel.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_settings(yaml)


def test_a_request_can_ask_for_a_mode(home: Path, upstream: FaultServer) -> None:
    extra = "  big: {deployments: [up]}\nmodes: {fast: up, accurate: big}\n"
    server, key = serve(home, upstream, extra)
    auth = {"authorization": f"Bearer {key}"}
    with server:
        client = openai.OpenAI(api_key=key, base_url=server.base_url + "/", max_retries=0)
        fast = client.chat.completions.with_raw_response.create(
            model="ignored", messages=[{"role": "user", "content": "hi"}], extra_body={"mode": "fast"}
        )
        accurate = httpx.post(f"{server.base_url}/chat/completions", headers={**auth, "x-keel-mode": "accurate"},
                              json={"messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        unknown = httpx.post(f"{server.base_url}/chat/completions", headers=auth,
                             json={"mode": "turbo", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert fast.http_response.status_code == 200 and accurate.status_code == 200, accurate.text
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "mode"
    assert "unknown mode 'turbo'; modes: accurate, fast" in unknown.json()["error"]["message"]
    rows = connect(db_path(home)).execute("SELECT alias, notes FROM traces WHERE operation = 'chat' ORDER BY ts")
    seen = {(alias, notes) for alias, notes in rows}
    assert ("up", '["mode fast → up"]') in seen and ("big", '["mode accurate → big"]') in seen


def test_keel_budgets_shows_each_bucket(home: Path, upstream: FaultServer, ledger_yaml: str) -> None:
    from tests.cli.test_cli import keel

    budget = "budgets:\n  daily: {per: user, usd: 1, tokens: 100000}\n"
    server, key = serve(home, upstream, budget + ledger_yaml)
    with server:
        for user in ("u1", "u2", "u1"):
            headers = {"authorization": f"Bearer {key}", "x-keel-user": user}
            assert httpx.post(f"{server.base_url}/chat/completions", json=BODY, headers=headers).status_code == 200
    config = home / "keel.yaml"
    config.write_text(
        f"deployments:\n  up: {{provider: openai, model: gpt-4o-mini, base_url: '{upstream.base_url}'}}\n"
        f"models:\n  up: {{deployments: [up]}}\n{budget}{ledger_yaml}"
    )
    out = keel(home, "budgets", "-c", str(config), env={"KEEL_TEST_REDIS": os.environ.get("KEEL_TEST_REDIS", "")})
    assert out.returncode == 0, out.stderr
    assert "user u1" in out.stdout and "user u2" in out.stdout and "$1 + 100,000 tok" in out.stdout


def test_an_error_status_is_not_charged_but_a_reset_keeps_its_worst_case(home: Path, upstream: FaultServer) -> None:
    """A provider that answers 500 bills nothing; one that dropped the connection may have."""
    assert WORST is not None
    server, key = serve(home, upstream, "budgets:\n  d: {per: user, usd: 100}\n")
    headers = {"authorization": f"Bearer {key}", "x-keel-user": "u1"}
    with server:
        upstream.inject(Fault.status_code(500))
        assert httpx.post(f"{server.base_url}/chat/completions", json=BODY, headers=headers).status_code >= 500

        def spent() -> int:
            with connect(db_path(home)) as conn:
                row = conn.execute("SELECT sum(spent_nusd) FROM budget_spend WHERE bucket LIKE 'd|%'").fetchone()
            return int(row[0] or 0)

        assert spent() == 0
        upstream.inject(Fault.reset())
        assert httpx.post(f"{server.base_url}/chat/completions", json=BODY, headers=headers).status_code >= 500
        assert spent() >= int(WORST * 1e9) - 1  # nothing came back: it may have been billed in full
