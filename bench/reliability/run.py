"""Issue 14's attacks replayed against `keel serve` on loopback, one table, each row with its target.

    python bench/reliability/run.py            # ~3 min
    python bench/reliability/run.py --quick    # fewer cases, ~1 min

Rows: canaries in every request field (upstream, trace store, journal and logs), the fuzzers (the
Hypothesis bodies of tests/server/test_fuzz.py, many more cases), idle and slow-header connection
floods, clients that stop reading a stream, the biggest embeddings requests, kill -9 mid-burst
(traces and ledger after the restart), and chaos: 30% upstream faults, mid-stream cuts included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: tests/ holds the fuzz bodies

from keel.config.loader import load_settings
from keel.cost.budgets import NANO
from keel.cost.ledger import StoreLedger
from keel.gateway.runtime import build_service, close_service
from keel.store import open_store
from keel.testing import Fault, FaultServer
from keel.testing.processes import serve_keel, stop_keel

console = Console(width=150)
ROWS: list[tuple[str, str, str, bool]] = []
CARD, EMAIL, KEY, PASSWORD = (
    "4000 0566 5566 5556",
    "canary.91c2@example.com",
    "sk_live_CANARY4eC39HqLyjWDarjtT1zdp7dc",
    "CanaryPass!9",
)


def row(name: str, measured: str, target: str, ok: bool) -> None:
    ROWS.append((name, measured, target, ok))
    console.print(f"  {'✓' if ok else '✗'} {name}: {measured}", style="green" if ok else "red")


def config(tmp: Path, upstream: FaultServer, extra: str = "", dep: str = "") -> Path:
    path = tmp / f"keel-{random.randrange(1 << 30)}.yaml"
    path.write_text(
        f"deployments:\n  up: {{provider: openai, model: gpt-4o-mini, base_url: '{upstream.base_url}'{dep}}}\n"
        "models:\n  up: {deployments: [up], retry: {attempts: 1}}\n" + extra
    )
    return path


# -- canaries ---------------------------------------------------------------------------------------
def canaries(tmp: Path, n: int) -> None:
    with FaultServer() as upstream:
        home = tmp / "canaries"
        proc, base = serve_keel(config(tmp, upstream), home, dict(os.environ), no_auth=True)
        body = {
            "model": "up",
            "messages": [
                {"role": "system", "content": f"Escalate to {EMAIL}; admin password={PASSWORD}"},
                {"role": "user", "content": [{"type": "text", "text": f"card {CARD}"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": json.dumps({"k": KEY})}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": f"found {EMAIL}"},
                {"role": "user", "content": "and now?"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": f"e.g. {KEY}", "parameters": {}}}],
            "user": EMAIL,
            "metadata": {"feature": f"support {EMAIL}", "note": f"card {CARD}"},
            "x_unknown": {"nested": [f"password={PASSWORD}", KEY]},
        }
        with httpx.Client(timeout=30) as client:
            codes = [
                client.post(f"{base}/chat/completions", json={**body, "stream": i % 2 == 1}).status_code
                for i in range(n)
            ]
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=20)
        sent = json.dumps([b for _, b in upstream.requests])
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    found = {
        where: sum(text.count(c) for c in (CARD, EMAIL, KEY, PASSWORD))
        for where, text in (
            ("upstream", sent),
            ("store+journal", stored.decode("utf-8", "replace")),
            ("log", log.decode()),
        )
    }
    ok = all(v == 0 for v in found.values()) and codes == [200] * n
    row(
        "canaries in every field",
        f"{n} calls, found: " + ", ".join(f"{k} {v}" for k, v in found.items()),
        "0 anywhere",
        ok,
    )


# -- fuzz -------------------------------------------------------------------------------------------
def fuzz(tmp: Path, per_body: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from tests.conftest import greet_project
    from tests.server.test_fuzz import BODIES, raw_bodies

    root = greet_project(tmp / "fuzz-project")
    statuses: dict[int, int] = {}
    with FaultServer() as upstream:
        extra = f"project_root: '{root}'\ndefault_model: up\nbudgets:\n  fuzz: {{usd: 1000}}\n"
        proc, base = serve_keel(config(tmp, upstream, extra), tmp / "fuzz", dict(os.environ), no_auth=True)
        client = httpx.Client(base_url=base, timeout=30)
        client.post("/collections", json={"name": "docs"})

        def fuzzer(path: str, bodies: Any) -> Callable[[], None]:
            @settings(max_examples=per_body, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
            @given(data=st.data())
            def run(data: st.DataObject) -> None:
                body = data.draw(bodies | raw_bodies)
                content = body if isinstance(body, bytes) else orjson.dumps(body)
                got = client.post(path, content=content, headers={"content-type": "application/json"})
                statuses[got.status_code] = statuses.get(got.status_code, 0) + 1

            return run

        for path, bodies in BODIES.items():
            fuzzer(path, bodies)()
        client.close()
        stop_keel([(proc, base)])
    total, fives = sum(statuses.values()), sum(v for k, v in statuses.items() if k >= 500)
    row("fuzz (7 bodies, Hypothesis)", f"{fives} 5xx of {total:,} cases", "0 of ≥ 2,000", fives == 0 and total >= 2000)


# -- connection floods --------------------------------------------------------------------------------
def floods(tmp: Path, n: int) -> None:
    timeout = 2.0
    with FaultServer() as upstream:
        path = config(tmp, upstream, f"server: {{header_timeout_s: {timeout}, max_connections: 1000}}\n")
        proc, base = serve_keel(path, tmp / "floods", dict(os.environ), no_auth=True)
        port = int(base.split(":")[2].split("/")[0])
        started = time.monotonic()
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            if i % 2:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")  # slow headers: never finished
            s.setblocking(False)
            socks.append(s)
        probes: list[float] = []
        ok = 0
        with httpx.Client(timeout=10) as client:
            while time.monotonic() - started < timeout + 1.5:
                t0 = time.perf_counter()
                ok += (
                    client.get(f"{base.removesuffix('/v1')}/healthz", headers={"connection": "close"}).status_code
                    == 200
                )
                probes.append((time.perf_counter() - t0) * 1000)
        closed_at = []
        for s in socks:
            s.setblocking(True)
            s.settimeout(0.1)
            try:
                gone = s.recv(1) == b""
            except (ConnectionResetError, BrokenPipeError):
                gone = True
            except TimeoutError:
                gone = False
            closed_at.append(gone)
            s.close()
        elapsed = time.monotonic() - started
        stop_keel([(proc, base)])
    all_closed = all(closed_at)
    p99 = statistics.quantiles(probes, n=100)[98] if len(probes) > 2 else 0.0
    row(
        f"{n:,} idle + slow-header connections",
        f"{sum(closed_at):,}/{n:,} closed by {elapsed:.1f} s; probes {ok}/{len(probes)} answered 200, p99 {p99:.1f} ms",
        f"all closed within the {timeout:g} s header timeout (+1 s); probes answered",
        all_closed and ok == len(probes),
    )


# -- non-reading stream clients -------------------------------------------------------------------------
def non_readers(tmp: Path) -> None:
    total = 2.0
    with FaultServer(reply="word " * 400_000) as upstream:
        dep = f", max_concurrency: 2, max_queue: 0, timeout: {{first_token: 5, total: {total}}}"
        proc, base = serve_keel(config(tmp, upstream, dep=dep), tmp / "readers", dict(os.environ), no_auth=True)
        port = int(base.split(":")[2].split("/")[0])
        body = orjson.dumps({"model": "up", "stream": True, "messages": [{"role": "user", "content": "go"}]})
        socks = []
        t0 = time.monotonic()
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            socks.append(s)
        freed = None
        small = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(timeout=10) as client:
            while time.monotonic() - t0 < total + 5:
                sent = time.monotonic() - t0
                got = client.post(f"{base}/chat/completions", json=small)
                if "waiting for a free slot" not in got.text:  # admitted (the mock itself may still be busy)
                    freed = sent
                    break
                time.sleep(0.05)
        for s in socks:
            s.close()
        stop_keel([(proc, base)])
    ok = freed is not None and abs(freed - (total + 1)) <= 1.0
    got = f"slots freed at {freed:.2f} s" if freed is not None else "never freed"
    row("clients that stop reading a stream", f"{got} (total {total:g} s)", "freed at total + 1 ± 1 s", ok)


# -- embeddings ---------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def embeddings(tmp: Path) -> None:
    with FaultServer() as upstream:
        extra = "server: {max_body_bytes: 8388608}\n"
        proc, base = serve_keel(config(tmp, upstream, extra), tmp / "embed", dict(os.environ), no_auth=True)
        with httpx.Client(timeout=600) as client:
            client.post(f"{base}/embeddings", json={"model": "all-minilm-l6-v2", "input": "warm up"})
            before = rss_mb(proc.pid)
            peak = [before]
            stop = threading.Event()

            def watch() -> None:
                while not stop.is_set():
                    peak.append(rss_mb(proc.pid))
                    time.sleep(0.05)

            threading.Thread(target=watch, daemon=True).start()
            others: list[float] = []
            results: dict[str, Any] = {}

            def big(name: str, inputs: list[str]) -> None:
                t0 = time.perf_counter()
                got = client.post(f"{base}/embeddings", json={"model": "all-minilm-l6-v2", "input": inputs})
                results[name] = (got.status_code, time.perf_counter() - t0)

            four_mb = threading.Thread(target=big, args=("4 MB", ["lorem ipsum dolor " * 110] * 2048))  # 4 MiB
            four_mb.start()
            four_mb.join()
            largest = ["lorem ipsum dolor sit amet " * 21] * 2048  # the most a request may carry: ~300k tokens
            small = {"model": "all-minilm-l6-v2", "input": "where is my refund"}
            idle: list[float] = []
            for _ in range(40):  # the same small request with the server idle: the baseline
                t0 = time.perf_counter()
                client.post(f"{base}/embeddings", json=small)
                idle.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.05)
            worker = threading.Thread(target=big, args=("largest allowed", largest))
            worker.start()
            time.sleep(0.2)
            while worker.is_alive():  # small embeddings requests, paced, while the big one runs
                t0 = time.perf_counter()
                client.post(f"{base}/embeddings", json=small)
                others.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.05)
            worker.join()
            stop.set()
        stop_keel([(proc, base)])
    grew = max(peak) - before
    p99 = statistics.quantiles(others, n=100)[98] if len(others) > 2 else float("nan")
    p50 = statistics.median(others) if others else float("nan")
    idle_p99 = statistics.quantiles(idle, n=100)[98]
    code4, t4 = results["4 MB"]
    code, took = results["largest allowed"]
    row(
        "a 4 MB embeddings request",
        f"{code4} in {t4:.2f} s (over the 300k-token limit)",
        "refused, bounded",
        code4 == 400,
    )
    row(
        "the largest allowed embeddings request (local MiniLM)",
        f"{code} in {took:.1f} s; RSS +{grew:.0f} MB; a one-input request meanwhile: p50 {p50:.0f} / "
        f"p99 {p99:.0f} ms ({len(others)}; idle p99 {idle_p99:.0f} ms)",
        "≤ +200 MB; small requests wait one turn, not the whole job",
        code == 200 and grew <= 200 and p99 < 5_000,
    )


# -- kill -9 mid-burst --------------------------------------------------------------------------------
def kill9(tmp: Path, burst: int) -> None:
    home = tmp / "kill9"
    with FaultServer(chunk_delay=0.0) as upstream:
        upstream.inject(*[Fault.stall(30)] * 8)  # eight calls still at the provider at the kill
        path = config(tmp, upstream, "budgets:\n  all: {usd: 1000}\n")
        proc, base = serve_keel(path, home, dict(os.environ), no_auth=True)
        body = {"model": "up", "messages": [{"role": "user", "content": "count"}], "max_tokens": 100}
        answered: list[str] = []

        async def run() -> None:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:

                async def one() -> None:
                    try:
                        got = await client.post(f"{base}/chat/completions", json=body)
                        if got.status_code == 200:
                            answered.append(got.headers["x-keel-trace-id"])
                    except httpx.HTTPError:
                        pass

                tasks = [asyncio.create_task(one()) for _ in range(burst)]
                while len(answered) < burst // 2:  # noqa: ASYNC110 - polling the answers is the point
                    await asyncio.sleep(0.001)
                proc.send_signal(signal.SIGKILL)  # mid-burst, inside the group-commit window
                await asyncio.gather(*tasks)

        asyncio.run(run())
        proc.wait(10)
    settings = load_settings(path)
    with open_store(settings, home) as store:
        before = len(store.traces.present(answered))
    service = build_service(settings, home)
    found = service.recovered
    asyncio.run(close_service(service))
    with open_store(settings, home) as store:
        stored = store.traces.present(answered)
        rows = store.traces.find(tenant=None, limit=100_000)
        ledger = StoreLedger(store.budgets)
        spent = sum(asyncio.run(ledger.usage(b))[0] for b in asyncio.run(ledger.buckets("all")))
    priced = sum(r.cost_usd or 0 for r in rows if r.status != "interrupted")
    worst = sum(r.cost_usd or 0 for r in rows if r.status == "interrupted")
    lost = len(answered) - len(stored)
    exact = abs(spent - (priced + worst) * NANO) <= len(rows)
    assert found is not None
    row(
        "kill -9 mid-burst: traces",
        f"{len(answered)} answered; {len(answered) - before} rows not yet stored at the kill, "
        f"{found.rebuilt} rebuilt; {lost} lost; {found.interrupted} interrupted traced",
        "lost ≤ the group-commit window, counted",
        lost == 0,
    )
    row(
        "kill -9 mid-burst: ledger",
        f"${spent / NANO:.6f} spent = ${priced:.6f} reported + ${worst:.6f} worst case of interrupted",
        "exactly",
        exact,
    )


# -- chaos --------------------------------------------------------------------------------------------
REPLY = (
    "Refunds are issued to the original payment method within five business days. If you paid by card, "
    "the refund shows on your statement as a credit from the same merchant name."
)


def chaos(tmp: Path, calls: int, resume: bool) -> None:
    rng = random.Random(14)
    kinds: list[Callable[[], Fault]] = [
        lambda: Fault.status_code(500),
        lambda: Fault.status_code(429, retry_after=0),
        Fault.reset,
        lambda: Fault.cut(after_chunks=rng.randrange(0, 6)),
    ]
    with FaultServer(reply=REPLY, resume_overlap=2) as one, FaultServer(reply=REPLY, resume_overlap=2) as two:
        for upstream in (one, two):
            upstream.inject(*[rng.choice(kinds)() if rng.random() < 0.3 else Fault.stall(0) for _ in range(calls * 3)])
        path = tmp / f"chaos-{resume}.yaml"
        path.write_text(
            f"deployments:\n  a: {{provider: openai, model: gpt-4o-mini, base_url: '{one.base_url}'}}\n"
            f"  b: {{provider: openai, model: gpt-4o-mini, base_url: '{two.base_url}'}}\n"
            "models:\n  up: {deployments: [a, b], retry: {attempts: 3, base_delay_s: 0, "
            f"resume_streams: {'true' if resume else 'false'}}}}}\n"
        )
        proc, base = serve_keel(path, tmp / f"chaos-{resume}", dict(os.environ), no_auth=True)
        good = 0
        with httpx.Client(timeout=30) as client:
            for i in range(calls):
                body = {"model": "up", "stream": True, "messages": [{"role": "user", "content": f"refunds? {i}"}]}
                with client.stream("POST", f"{base}/chat/completions", json=body) as got:
                    raw = "".join(got.iter_text()) if got.status_code == 200 else ""
                text = "".join(
                    (c.get("delta") or {}).get("content") or ""
                    for line in raw.split("\n")
                    if line.startswith("data: {")
                    for c in orjson.loads(line[6:]).get("choices") or []
                )
                good += got.status_code == 200 and text == REPLY and "event: error" not in raw
        stop_keel([(proc, base)])
    share = good / calls
    target = 0.999 if resume else 0.97
    row(
        f"chaos: 30% faults, cuts included, resume_streams {'on' if resume else 'off'}",
        f"{good}/{calls} exact, uninterrupted answers ({share:.1%})",
        f"≥ {target:.1%}",
        share >= target,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    q = args.quick
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        steps = [
            ("canaries", lambda: canaries(tmp, 10 if q else 50)),
            ("fuzz", lambda: fuzz(tmp, 60 if q else 300)),
            ("floods", lambda: floods(tmp, 400 if q else 2000)),
            ("non-readers", lambda: non_readers(tmp)),
            ("embeddings", lambda: embeddings(tmp)),
            ("kill -9", lambda: kill9(tmp, 100 if q else 400)),
            ("chaos", lambda: chaos(tmp, 200 if q else 1000, resume=False)),
            ("chaos, resuming", lambda: chaos(tmp, 200 if q else 1000, resume=True)),
        ]
        for name, step in steps:
            console.print(f"[bold]{name}[/bold]")
            step()
    table = Table(title="issue 14's attacks, replayed (bench/reliability/run.py)")
    for col in ("attack", "measured", "target", "met"):
        table.add_column(col)
    for name, measured, target, ok in ROWS:
        table.add_row(name, measured, target, "[green]yes[/green]" if ok else "[red]no[/red]")
    console.print(table)


if __name__ == "__main__":
    main()
