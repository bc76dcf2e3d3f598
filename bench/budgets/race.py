"""Budgets and rate limits under load, on real servers: ``keel serve`` processes in front of a
fault-injecting OpenAI-compatible upstream, sharing a Redis for the multi-replica runs.

    python bench/budgets/race.py            # ~1 min

**Budget race**: 200 concurrent calls against a budget that fits 50 of them (each call's worst case
is 1,000 output tokens at gpt-4o-mini prices, and each really uses 900 — so 56 calls' real cost
would pass the budget; the upstream holds every call 0.5 s so all 200 are in flight together).
Reported: calls served, overspend = what the served calls cost (from the upstream's reported
usage, not Keel's ledger) minus the budget. Target: overspend exactly 0, ≥ 48
served. One replica on the embedded ledger; three replicas sharing Redis; three sharing only a Postgres
store (budgets counted there, per-bucket locks); calls spread round robin.

**Side by side**: the LiteLLM proxy (1.106.2, in ``bench/.venv-litellm``, installed on first use)
with the same budget, configured the two ways its docs offer without a database —
``litellm_settings.max_budget`` (a global proxy budget) and ``router_settings.provider_budget_config``
(a per-provider budget) — against the same upstream, same 200 calls. ``--skip-litellm`` skips it.

**Rate limit accuracy**: three replicas sharing Redis, a 100 RPM limit, 1,000 requests as fast as
they go: admitted must be ≤ 100 in the window.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from keel.cost.prices import PriceTable
from keel.testing import Fault, FaultServer
from keel.testing.postgres_server import PostgresServer
from keel.testing.processes import Served, serve_keel, stop_keel
from keel.testing.redis_server import RedisServer, free_port
from keel.types import Usage

console = Console(width=140)
BODY = {"model": "up", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000}
PRICES = PriceTable.load()


def worst_case() -> float:
    cost = PRICES.cost("gpt-4o-mini", Usage(input_tokens=5, output_tokens=1000))
    assert cost is not None
    return cost


def start_replicas(n: int, config: str, tmp: Path, env: dict[str, str]) -> list[Served]:
    path = tmp / "keel.yaml"
    path.write_text(config)
    return [serve_keel(path, tmp / f"home{i}", env, no_auth=True) for i in range(n)]


async def fire(bases: list[str], count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(client.post(f"{bases[i % len(bases)]}/chat/completions", json=BODY) for i in range(count))
        )


def run_against(
    upstream: FaultServer, faults: list[Fault], replicas: int, config: str, env: dict[str, str], count: int
) -> tuple[list[httpx.Response], float]:
    """Start the replicas in front of ``upstream`` (its base URL fills ``config``'s %s), fire ``count``
    requests at once, stop everything; the replies and the seconds they took."""
    with upstream, tempfile.TemporaryDirectory() as tmp:
        upstream.inject(*faults)
        servers = start_replicas(replicas, config % upstream.base_url, Path(tmp), env)
        try:
            t0 = time.perf_counter()
            replies = asyncio.run(fire([b for _, b in servers], count))
            return replies, time.perf_counter() - t0
        finally:
            stop_keel(servers)


def served_cost(replies: list[httpx.Response]) -> float:
    total = 0.0
    for r in replies:
        if r.status_code == 200:
            u = r.json()["usage"]
            total += PRICES.cost("gpt-4o-mini", Usage(u["prompt_tokens"], u["completion_tokens"])) or 0.0
    return total


def budget_race(replicas: int, ledger: str, redis_url: str | None, pg_url: str | None = None) -> dict[str, float]:
    budget = worst_case() * 50
    config = (
        "deployments:\n  up: {provider: openai, model: gpt-4o-mini, base_url: '%s'}\n"
        "models:\n  up: {deployments: [up], retry: {attempts: 1}}\n"
        f"budgets:\n  global: {{usd: {budget:.9f}}}\n"
    )
    env = dict(os.environ)
    if ledger == "redis":
        config += "ledger: {backend: redis, redis_url: {$env: BENCH_REDIS}}\n"
        env["BENCH_REDIS"] = redis_url or ""
    if ledger == "postgres":  # no Redis: budgets counted in the shared store, with per-bucket locks
        config += "store: {backend: postgres, url: {$env: BENCH_PG}}\n"
        env["BENCH_PG"] = pg_url or ""
    upstream = FaultServer(reply=" ".join(["word"] * 900))
    replies, seconds = run_against(upstream, [Fault.stall(0.5)] * 200, replicas, config, env, 200)
    ok = sum(r.status_code == 200 for r in replies)
    refused = sum(r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded" for r in replies)
    spent = served_cost(replies)
    return {"ok": ok, "refused": refused, "other": 200 - ok - refused, "budget": budget, "spent": spent,
            "overspend": max(0.0, spent - budget), "seconds": seconds}  # fmt: skip


def litellm_race(how: str) -> dict[str, float] | None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
    from run import ensure_litellm, wait_http  # the gateway bench's installer

    exe = ensure_litellm()
    if exe is None:
        return None
    budget = worst_case() * 50
    master = "sk-" + os.urandom(16).hex()
    limit = (
        f"litellm_settings:\n  max_budget: {budget:.9f}\n  budget_duration: 1d\n"
        if how == "max_budget"
        else f"router_settings:\n  provider_budget_config:\n    openai:\n      budget_limit: {budget:.9f}\n"
        "      time_period: 1d\n"
    )
    with FaultServer(reply=" ".join(["word"] * 900)) as upstream, tempfile.TemporaryDirectory() as tmp:
        upstream.inject(*[Fault.stall(0.5)] * 200)
        cfg = Path(tmp) / "litellm.yaml"
        cfg.write_text(
            "model_list:\n  - model_name: up\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
            f"      api_base: {upstream.base_url}\n      api_key: sk-bench\n{limit}"
            f"general_settings:\n  master_key: {master}\n"
        )
        port = free_port()
        env = {
            **os.environ,
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        proc = subprocess.Popen([str(exe), "--config", str(cfg), "--port", str(port), "--num_workers", "1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
            base = f"http://127.0.0.1:{port}/v1"

            async def burst() -> list[httpx.Response]:
                limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
                async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                    auth = {"Authorization": f"Bearer {master}"}
                    calls = (client.post(f"{base}/chat/completions", json=BODY, headers=auth) for _ in range(200))
                    return await asyncio.gather(*calls)

            t0 = time.perf_counter()
            replies = asyncio.run(burst())
            seconds = time.perf_counter() - t0
            time.sleep(2)  # let it book the spend, then ask once more: does the budget hold at all?
            after = httpx.post(f"{base}/chat/completions", json=BODY, headers={"Authorization": f"Bearer {master}"},
                               timeout=60).status_code  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ok = sum(r.status_code == 200 for r in replies)
    spent = served_cost(replies)
    return {"ok": ok, "refused": 200 - ok, "other": 0, "budget": budget, "spent": spent,
            "overspend": max(0.0, spent - budget), "seconds": seconds, "after": after}  # fmt: skip


def rate_accuracy(redis_url: str) -> dict[str, float]:
    config = (
        "deployments:\n  up: {provider: openai, model: gpt-4o-mini, base_url: '%s'}\n"
        "models:\n  up: {deployments: [up], retry: {attempts: 1}}\n"
        "limits:\n  global: {rpm: 100}\n"
        "ledger: {backend: redis, redis_url: {$env: BENCH_REDIS}}\n"
    )
    replies, seconds = run_against(FaultServer(), [], 3, config, {**os.environ, "BENCH_REDIS": redis_url}, 1000)
    ok = sum(r.status_code == 200 for r in replies)
    limited = sum(r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded" for r in replies)
    return {"admitted": ok, "limited": limited, "other": 1000 - ok - limited, "seconds": seconds}


def main() -> None:
    skip_litellm = "--skip-litellm" in sys.argv
    table = Table("run", "served", "refused (429)", "other", "spent", "budget", "overspend", "s",
                  title="budget race: 200 concurrent calls, a budget that fits 50")  # fmt: skip
    with RedisServer() as redis, PostgresServer() as pg:
        runs = (("1 replica, embedded", 1, "embedded"), ("3 replicas, Redis", 3, "redis"),
                ("3 replicas, Postgres store", 3, "postgres"))  # fmt: skip
        for label, replicas, ledger in runs:
            r = budget_race(replicas, ledger, redis.url, pg.database())
            table.add_row(label, f"{r['ok']:.0f}", f"{r['refused']:.0f}", f"{r['other']:.0f}", f"${r['spent']:.6f}",
                          f"${r['budget']:.6f}", f"${r['overspend']:.6f}", f"{r['seconds']:.1f}")  # fmt: skip
        for how in () if skip_litellm else ("max_budget", "provider_budget_config"):
            r = litellm_race(how)  # type: ignore[assignment]
            if r is None:
                console.print("[yellow]LiteLLM could not be installed; its rows are skipped[/yellow]")
                break
            money = (f"${r['spent']:.6f}", f"${r['budget']:.6f}", f"${r['overspend']:.6f}", f"{r['seconds']:.1f}")
            label = f"LiteLLM proxy, {how} (no DB; next call: {r['after']:.0f})"
            table.add_row(label, f"{r['ok']:.0f}", f"{r['refused']:.0f}", "—", *money)
        console.print(table)
        rate = rate_accuracy(redis.url)
    table = Table("run", "admitted", "limited (429)", "other", "limit", "s", title="rate limit accuracy")
    table.add_row("3 replicas, Redis, 1,000 requests", f"{rate['admitted']:.0f}", f"{rate['limited']:.0f}",
                  f"{rate['other']:.0f}", "100 / min", f"{rate['seconds']:.1f}")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
