"""Job queue throughput and enqueue-to-start latency, on the embedded store (SQLite) and Postgres.

- **Throughput**: 2,000 trivial jobs (the work returns at once) queued, then drained by one pool of
  8 workers; jobs per second from the first claim to the last finish. Each job is a claim, a
  progress write and a finish: three write transactions.
- **Latency**: jobs queued one at a time on an idle queue; the time from enqueue to the work's first
  line. *nudged*: the pool was told (``keel serve``: a job submitted over HTTP wakes its own pool);
  *polled*: it was not (a ``keel worker`` on another host finds it on its next idle poll, every 0.05 s).

    python bench/jobs/throughput.py [--jobs 2000] [--latency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from keel.config.jobs import JobsSettings
from keel.jobs.worker import Pool
from keel.store import Store
from keel.store.engines import open_postgres, open_sqlite
from keel.store.jobs import Job
from keel.testing.postgres_server import PostgresServer


async def drain(store: Store, jobs: int, workers: int) -> float:
    finished = asyncio.Event()
    done = 0
    first: list[float] = []

    async def noop(job: Job) -> tuple[Any, float | None]:
        nonlocal done
        if not first:
            first.append(time.perf_counter())
        done += 1
        if done >= jobs:
            finished.set()
        return {"n": job.payload["n"]}, None

    for i in range(jobs):
        store.jobs.enqueue("bench", "noop", {"n": i})
    pool = Pool(store, {"noop": noop}, JobsSettings(workers=workers, lease_s=30))
    pool.start()
    pool.nudge()
    await asyncio.wait_for(finished.wait(), 600)
    running = "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
    while store.db.scalar(running):  # noqa: ASYNC110  # the last finishes are written
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - first[0]
    await pool.aclose()
    return jobs / elapsed


async def latency(store: Store, n: int, nudge: bool) -> list[float]:
    started: dict[str, float] = {}

    async def mark(job: Job) -> tuple[Any, float | None]:
        started[job.id] = time.perf_counter()
        return None, None

    pool = Pool(store, {"mark": mark}, JobsSettings(workers=2, lease_s=30))
    pool.start()
    out = []
    await asyncio.sleep(0.3)
    for _ in range(n):
        t0 = time.perf_counter()
        job, _ = await asyncio.to_thread(store.jobs.enqueue, "bench", "mark", {})
        if nudge:
            pool.nudge()
        while job.id not in started:  # noqa: ASYNC110  # a tight poll: the measured wait is the pool's
            await asyncio.sleep(0.0005)
        out.append((started[job.id] - t0) * 1000)
        await asyncio.sleep(random.uniform(0.0, 0.15))  # not in step with the pool's polls
    await pool.aclose()
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--latency", type=int, default=200)
    args = parser.parse_args()
    console = Console(width=120)
    table = Table(title=f"durable jobs: {args.jobs:,} trivial jobs drained by 8 workers; {args.latency} idle enqueues")
    for col in ("store", "jobs/s", "nudged p50 ms", "nudged p99 ms", "polled p50 ms", "polled p99 ms"):
        table.add_column(col, justify="right")
    with (
        tempfile.TemporaryDirectory() as tmp,
        PostgresServer(Path(tmp) / "pg") as pg,
        Progress(console=console, transient=True) as bar,
    ):
        engines = {
            "embedded (SQLite)": lambda: open_sqlite(Path(tmp) / "keel.db"),
            "Postgres 16": lambda: open_postgres(pg.database("jobs")),
        }
        task = bar.add_task("engines", total=len(engines) * 3)
        for name, opener in engines.items():
            with Store(opener()) as store:
                rate = await drain(store, args.jobs, 8)
                bar.advance(task)
                nudged = await latency(store, args.latency, True)
                bar.advance(task)
                polled = await latency(store, args.latency, False)
                bar.advance(task)
            table.add_row(
                name, f"{rate:,.0f}", f"{pct(nudged, 50):.1f}", f"{pct(nudged, 99):.1f}",
                f"{pct(polled, 50):.1f}", f"{pct(polled, 99):.1f}",
            )  # fmt: skip
    console.print(table)
    console.print("targets: ≥ 200 jobs/s of trivial work; enqueue-to-start p50 ≤ 50 ms on an idle queue")


if __name__ == "__main__":
    asyncio.run(main())
