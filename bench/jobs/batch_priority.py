"""Batches never starve interactive traffic, and a batch through the official SDK costs the discount.

``keel serve`` (its embedded pool running the batch) in front of the fault server, which answers
each call after 50 ms; the deployment has 8 slots, of which batch lines may hold 4
(``batch: {max_concurrency: 4}``) and take a free one only while no interactive call waits.

1. **Priority**: 400 interactive chat completions, 8 at a time, on an idle gateway; then the same
   while a 10,000-line batch runs. Latency p50 and p99 side by side.
2. **A 1,000-line batch via the official ``openai`` SDK**: upload, create, poll to ``completed``;
   output lines matched to the ``custom_id``s, and the batch's cost against the list price.

    python bench/jobs/batch_priority.py [--batch 10000] [--calls 400]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import openai
from rich.console import Console
from rich.table import Table

from keel.cost import PriceTable
from keel.store import Store
from keel.store.engines import open_sqlite
from keel.store.keys import Keys
from keel.store.sqlite import db_path
from keel.testing import FaultServer
from keel.testing.processes import serve_keel, stop_keel
from keel.types import Usage

CONFIG = """deployments:
  up: {{provider: openai, model: gpt-4o-mini, base_url: '{url}', max_concurrency: 8, max_queue: 1000,
        batch: {{discount: 0.5, max_concurrency: 4}}}}
models:
  up: {{deployments: [up]}}
default_model: up
jobs: {{workers: 2}}
batches: {{max_lines: 20000, concurrency: 16, max_file_bytes: 52428800}}
"""


def jsonl(n: int, prefix: str) -> bytes:
    rows = (
        {"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "up", "messages": [{"role": "user", "content": f"{prefix} question {i}"}], "max_tokens": 16}}
        for i in range(n)
    )  # fmt: skip
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


async def interactive(base: str, key: str, calls: int, concurrency: int = 8) -> list[float]:
    gate = asyncio.Semaphore(concurrency)
    out: list[float] = []
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=60) as client:

        async def one(i: int) -> None:
            async with gate:
                t0 = time.perf_counter()
                body = {"model": "up", "messages": [{"role": "user", "content": f"now {i}"}], "max_tokens": 16}
                r = await client.post(f"{base}/chat/completions", json=body)
                r.raise_for_status()
                out.append((time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(one(i) for i in range(calls)))
    return out


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    console = Console(width=120)
    with tempfile.TemporaryDirectory() as t, FaultServer(latency=0.05) as upstream:
        home, cfg = Path(t) / "home", Path(t) / "keel.yaml"
        home.mkdir()
        cfg.write_text(CONFIG.format(url=upstream.base_url))
        with Store(open_sqlite(db_path(home))) as setup:
            key = Keys(setup.db).create("acme", "bench")[0]
        served = serve_keel(cfg, home, dict(os.environ))
        try:
            base = served[1]
            sdk = openai.OpenAI(base_url=base, api_key=key, max_retries=3)
            asyncio.run(interactive(base, key, 50))  # warm
            idle = asyncio.run(interactive(base, key, args.calls))
            big = sdk.files.create(file=("big.jsonl", io.BytesIO(jsonl(args.batch, "big"))), purpose="batch")
            running = sdk.batches.create(input_file_id=big.id, endpoint="/v1/chat/completions", completion_window="24h")
            while sdk.batches.retrieve(running.id).request_counts.completed < 200:
                time.sleep(0.1)  # the batch is in full flow
            loaded = asyncio.run(interactive(base, key, args.calls))
            during = sdk.batches.retrieve(running.id).request_counts.completed
            sdk.batches.cancel(running.id)
            while sdk.batches.retrieve(running.id).status != "cancelled":
                time.sleep(0.1)
            t0 = time.perf_counter()
            small = sdk.files.create(file=("small.jsonl", io.BytesIO(jsonl(1000, "sdk"))), purpose="batch")
            batch = sdk.batches.create(input_file_id=small.id, endpoint="/v1/chat/completions", completion_window="24h")
            while (batch := sdk.batches.retrieve(batch.id)).status not in (
                "completed",
                "failed",
                "expired",
                "cancelled",
            ):
                time.sleep(0.2)
            took = time.perf_counter() - t0
            out = [json.loads(x) for x in sdk.files.content(batch.output_file_id).text.splitlines()]
            raw = httpx.get(f"{base}/batches/{batch.id}", headers={"authorization": f"Bearer {key}"}).json()
            with Store(open_sqlite(db_path(home))) as store:
                usage = store.db.one(
                    "SELECT sum(input_tokens) AS i, sum(output_tokens) AS o FROM traces WHERE notes LIKE ?",
                    (f"%batch {batch.id}%",),
                )
            assert usage is not None
            listed = PriceTable.load().cost(
                "gpt-4o-mini", Usage(input_tokens=int(usage["i"]), output_tokens=int(usage["o"]))
            )
        finally:
            stop_keel([served])
    table = Table(
        title=f"interactive chat, {args.calls} calls 8 at a time: idle vs while a {args.batch:,}-line batch runs"
    )
    for col in ("gateway", "p50 ms", "p99 ms", "batch lines done meanwhile"):
        table.add_column(col, justify="right")
    table.add_row("idle", f"{pct(idle, 50):.0f}", f"{pct(idle, 99):.0f}", "—")
    table.add_row("batch running", f"{pct(loaded, 50):.0f}", f"{pct(loaded, 99):.0f}", f"{during:,}")
    console.print(table)
    ids = sorted(o["custom_id"] for o in out)
    matched = ids == sorted(f"sdk-{i}" for i in range(1000))
    second = Table(title="a 1,000-line batch through the official openai SDK")
    second.add_column("")
    second.add_column("figure", justify="right")
    second.add_row("status", batch.status)
    second.add_row("time to completed (upload included)", f"{took:.1f} s")
    second.add_row(
        "output lines matching the custom_ids", f"{len(out)} ({'all, once each' if matched else 'MISMATCH'})"
    )
    cost = float(raw["cost_usd"] or 0)
    second.add_row(
        "batch cost / list price of the same tokens", f"${cost:.6f} / ${listed or 0:.6f} = {cost / (listed or 1):.2f}"
    )
    console.print(second)


if __name__ == "__main__":
    main()
