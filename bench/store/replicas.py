"""Three replicas as one Keel: ``keel serve`` ×3 (each its own KEEL_HOME, as separate hosts would
be) on one Postgres (the store) and one Redis (budgets and limits), in front of a mock upstream.

    .venv/bin/python bench/store/replicas.py            # ~2 min
    .venv/bin/python bench/store/replicas.py --requests 600

Checked, in one run:
- a key created through host 1's store is accepted by host 3 (and how soon);
- 3,000 requests at concurrency 48 spread round robin: errors, trace rows in Postgres (= completed
  requests, exactly), the Redis budget's spend (= the sum of the traces' reported costs, exactly,
  in nano-dollars), and p50/p95 next to the same load on one embedded replica and on the upstream
  directly;
- added p50 at concurrency 1 (1,000 sequential requests) with the embedded store and with the
  Postgres store: trace writes stay off the request path (target: within 0.2 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from keel.cost.budgets import NANO, to_nano
from keel.cost.ledger import RedisLedger
from keel.store import Store
from keel.store.engines import open_postgres
from keel.testing.postgres_server import PostgresServer
from keel.testing.processes import Served, serve_keel, stop_keel
from keel.testing.redis_server import RedisServer, free_port

console = Console(width=150)
BODY = {"model": "up", "messages": [{"role": "user", "content": "What is our refund policy?"}], "max_tokens": 64}
PLAIN = """
deployments:
  up: {{provider: openai, model: gpt-4o-mini, base_url: "{upstream}", api_key: {{"$env": "UPSTREAM_KEY"}}}}
models:
  up: {{deployments: [up]}}
default_model: up
"""  # no budgets or limits: the c=1 comparison isolates the store
BASE = (
    PLAIN
    + """budgets:
  everything: {{usd: 1000000, period: day}}
limits:
  generous: {{rpm: 1000000}}
"""
)
POSTGRES_STORE = """
store: {backend: postgres, url: {"$env": "KEEL_PG_URL"}}
"""
SCALE_OUT = (
    POSTGRES_STORE
    + """ledger: {backend: redis, redis_url: {"$env": "KEEL_REDIS_URL"}}
"""
)


def start(n: int, config: Path, tmp: Path, env: dict[str, str], tag: str) -> list[Served]:
    return [serve_keel(config, tmp / f"{tag}{i}", env) for i in range(n)]


def mock_upstream() -> tuple[subprocess.Popen[bytes], str]:
    """The mock upstream in a process of its own (in this one it would share the GIL with the client)."""
    port = free_port()
    script = Path(__file__).resolve().parent.parent / "gateway" / "mock_upstream.py"
    proc = subprocess.Popen([sys.executable, str(script), "--port", str(port)], stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{base}/chat/completions", json=BODY, timeout=1)
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("the mock upstream did not start")


async def load(bases: list[str], key: str, count: int, concurrency: int) -> tuple[list[float], int, list[str]]:
    """(latencies ms, errors, trace ids) for ``count`` requests, ``concurrency`` at a time (aiohttp:
    a lighter client than httpx, so the client is less of the measurement)."""
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    traces: list[str] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(i: int) -> None:
            nonlocal errors
            async with gate:
                started = time.perf_counter()
                try:
                    async with session.post(f"{bases[i % len(bases)]}/chat/completions", json=BODY) as r:
                        await r.read()
                        status, trace = r.status, r.headers.get("x-keel-trace-id")
                except aiohttp.ClientError:
                    errors += 1
                    return
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    errors += 1
                elif trace:
                    traces.append(trace)

        await asyncio.gather(*(one(i) for i in range(count)))
    return latencies, errors, traces


def sequential(base: str, key: str, count: int) -> float:
    """p50 ms of ``count`` requests one after another."""
    times = []
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {key}"}) as client:
        for _ in range(50):  # warm up
            client.post(f"{base}/chat/completions", json=BODY)
        for _ in range(count):
            started = time.perf_counter()
            client.post(f"{base}/chat/completions", json=BODY).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def budget_spend(url: str) -> int:
    """What the Redis ledger counted against the 'everything' budget, in nano-dollars."""
    ledger = RedisLedger(url)
    try:
        spent = 0
        for bucket in await ledger.buckets("everything"):
            spent += (await ledger.usage(bucket))[0]
        return spent
    finally:
        await ledger.aclose()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--sequential", type=int, default=1000)
    args = parser.parse_args()
    upstream_proc, upstream = mock_upstream()
    with tempfile.TemporaryDirectory() as raw, PostgresServer() as pg, RedisServer() as redis:
        tmp = Path(raw)
        pg_url = pg.database()
        env = {**os.environ, "KEEL_PG_URL": pg_url, "KEEL_REDIS_URL": redis.url, "UPSTREAM_KEY": "sk-mock"}
        env.pop("KEEL_CONFIG", None)
        configs = {
            "embedded": BASE.format(upstream=upstream),
            "scaled": BASE.format(upstream=upstream) + SCALE_OUT,
            "plain": PLAIN.format(upstream=upstream),
            "plain-pg": PLAIN.format(upstream=upstream) + POSTGRES_STORE,
        }
        for name, text in configs.items():
            (tmp / f"{name}.yaml").write_text(text)
        embedded_cfg = tmp / "embedded.yaml"
        replicas = start(3, tmp / "scaled.yaml", tmp, env, "host")
        single = start(1, embedded_cfg, tmp, env, "embedded")
        plain = start(1, tmp / "plain.yaml", tmp, env, "plain") + start(1, tmp / "plain-pg.yaml", tmp, env, "plainpg")
        try:
            with Store(open_postgres(pg_url)) as shared:  # as `keel keys create` on host 1 would
                key, _ = shared.keys.create("acme", "bench")
            created = time.perf_counter()
            while httpx.post(f"{replicas[2][1]}/chat/completions", json=BODY,
                             headers={"authorization": f"Bearer {key}"}).status_code != 200:  # fmt: skip
                time.sleep(0.01)
            key_seen_ms = (time.perf_counter() - created) * 1000
            embedded_key = subprocess.run(
                [sys.executable, "-m", "keel", "keys", "create", "--tenant", "acme", "-c", str(embedded_cfg)],
                env={**env, "KEEL_HOME": str(tmp / "embedded0")}, capture_output=True, text=True, check=True,
            ).stdout.split()[0]  # fmt: skip

            bases = [b for _, b in replicas]
            direct = asyncio.run(load([upstream], "sk-mock", args.requests, args.concurrency))
            one_host = asyncio.run(load([single[0][1]], embedded_key, args.requests, args.concurrency))
            with Store(open_postgres(pg_url)) as shared:
                before = shared.traces.count(tenant="acme")
            three = asyncio.run(load(bases, key, args.requests, args.concurrency))
            completed = len(three[2])
            with Store(open_postgres(pg_url)) as shared:
                deadline = time.monotonic() + 30
                while shared.traces.count(tenant="acme") < before + completed and time.monotonic() < deadline:
                    time.sleep(0.2)
                rows = shared.traces.count(tenant="acme") - before
                total_nusd = sum(to_nano(r["cost_usd"]) for r in shared.db.all(
                    "SELECT cost_usd FROM traces WHERE tenant = 'acme' AND operation = 'chat'"))  # fmt: skip
            ledger_nusd = asyncio.run(budget_spend(redis.url))

            plain_key = subprocess.run(
                [sys.executable, "-m", "keel", "keys", "create", "--tenant", "acme", "-c", str(tmp / "plain.yaml")],
                env={**env, "KEEL_HOME": str(tmp / "plain0")}, capture_output=True, text=True, check=True,
            ).stdout.split()[0]  # fmt: skip
            c1 = {"direct": [], "embedded": [], "postgres": []}
            for _ in range(3):  # interleaved rounds: drift on the machine touches all three alike
                c1["direct"].append(sequential(upstream, "sk-mock", args.sequential))
                c1["embedded"].append(sequential(plain[0][1], plain_key, args.sequential))
                c1["postgres"].append(sequential(plain[1][1], key, args.sequential))
            c1_direct, c1_embedded, c1_pg = (statistics.median(v) for v in c1.values())
        finally:
            stop_keel(replicas + single + plain)
            upstream_proc.terminate()

    title = f"{args.requests:,} requests at concurrency {args.concurrency} (aiohttp client; mock upstream process)"
    table = Table("target", "requests", "errors", "p50 ms", "p95 ms", "added p50 ms", title=title)
    d50 = statistics.median(direct[0])
    for name, (lat, errors, _) in (("upstream directly", direct), ("1 replica, embedded (SQLite)", one_host),
                                   ("3 replicas, Postgres + Redis", three)):  # fmt: skip
        added = "" if name.startswith("upstream") else f"+{statistics.median(lat) - d50:.2f}"
        table.add_row(name, f"{len(lat):,}", str(errors), f"{statistics.median(lat):.2f}", f"{pct(lat, 95):.2f}", added)
    console.print(table)
    checks = Table("check", "measured", "target", title="three replicas act as one Keel")
    checks.add_row("key made on host 1, accepted by host 3 after", f"{key_seen_ms:.0f} ms", "≤ 1,000 ms")
    checks.add_row("trace rows in Postgres / completed requests", f"{rows:,} / {completed:,}", "equal")
    checks.add_row(
        "Redis budget spend / sum of traced costs",
        f"${ledger_nusd / NANO:.9f} / ${total_nusd / NANO:.9f}",
        "equal to the nano-dollar",
    )
    checks.add_row("errors across the three replicas", str(three[1]), "0")
    checks.add_row(
        "added p50 at c=1 (no budgets): embedded → Postgres store, medians of 3",
        f"+{c1_embedded - c1_direct:.3f} → +{c1_pg - c1_direct:.3f} ms (Δ {c1_pg - c1_embedded:+.3f})",
        "Δ ≤ 0.2 ms",
    )
    console.print(checks)


if __name__ == "__main__":
    main()
