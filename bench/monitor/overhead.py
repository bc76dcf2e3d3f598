"""What monitors add to the request path: a hash per monitor and, for a sampled run, one queue
insert — timed on real runs, beside whole runs with monitors on and off.

    python bench/monitor/overhead.py                  # ~1 min
    python bench/monitor/overhead.py --postgres       # the queue on a real Postgres too

A feature on the scripted provider (no retrieval, so the run itself is short and the difference
shows) runs ``--runs`` times with ``monitors: {quality: {sample: 0.1, checks: [grounded]}}`` and
as many times without, interleaved. Reported: the hand-off's own time per run (p50, p90, p99 —
the p50 is an unsampled run's hash, the tail a sampled run's insert), and the whole run's p50 with
monitors on and off. Target: ≤ 0.05 ms p50 added.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import keel.features.pipeline as pipeline_module
import keel.testing  # noqa: F401  (offers the scripted provider to this process)
from keel.config import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.features.pipeline import open_pipeline

console = Console(width=120)
PROMPT = "---\ninputs:\n  question: {type: str}\n---\n[system]\nYou are Acme support.\n[user]\n{{ question }}\n"
WATCHED = "prompt: support\nmodel: m\nmonitors:\n  quality: {sample: 0.1, checks: [grounded], window: 1d}\n"
PLAIN = "prompt: support\nmodel: m\n"
CONFIG = "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(root: Path, home: Path, store_yaml: str, runs: int) -> dict[str, Any]:
    settings = settings_from_yaml(parse_yaml(f"project_root: '{root}'\n{store_yaml}{CONFIG}", "bench"))
    hook: list[float] = []
    real = pipeline_module.enqueue_samples

    def timed(store: Any, plan: Any) -> int:
        t0 = time.perf_counter()
        try:
            return real(store, plan)
        finally:
            if plan.spec.monitors:
                hook.append((time.perf_counter() - t0) * 1000)

    pipeline_module.enqueue_samples = timed  # type: ignore[assignment]
    whole: dict[str, list[float]] = {"watched": [], "plain": []}
    try:
        async with open_pipeline(settings, home, root) as pipe:
            for name in ("watched", "plain"):  # warm: prompt versions recorded, spec parsed
                await pipe.run(name, {"question": "warm up"})
            for i in range(runs):
                for name in ("watched", "plain"):
                    t0 = time.perf_counter()
                    await pipe.run(name, {"question": f"How long do refunds take? ({i})"})
                    whole[name].append((time.perf_counter() - t0) * 1000)
            queued = pipe.store.jobs.depth()[0]
    finally:
        pipeline_module.enqueue_samples = real  # type: ignore[assignment]
    return {"hook": hook, "whole": whole, "queued": queued}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--postgres", action="store_true", help="the queue on a real Postgres too")
    args = parser.parse_args()
    table = Table("store", "hand-off p50", "p90", "p99", "run p50 on", "run p50 off", "difference", "queued",
                  title=f"monitors on the request path ({args.runs} runs each, interleaved)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp) / "project"
        for folder in ("features", "prompts"):
            (root / folder).mkdir(parents=True)
        (root / "prompts" / "support.md").write_text(PROMPT)
        (root / "features" / "watched.yaml").write_text(WATCHED)
        (root / "features" / "plain.yaml").write_text(PLAIN)
        stores = [("sqlite", "", Path(tmp) / "home-sqlite")]
        if args.postgres:
            from keel.testing.postgres_server import PostgresServer

            server = stack.enter_context(PostgresServer(Path(tmp) / "pg"))
            os.environ["BENCH_PG"] = server.url
            stores.append(("postgres", "store: {backend: postgres, url: {$env: BENCH_PG}}\n", Path(tmp) / "home-pg"))
        for label, store_yaml, home in stores:
            found = asyncio.run(measure(root, home, store_yaml, args.runs))
            hook, whole = found["hook"], found["whole"]
            on, off = statistics.median(whole["watched"]), statistics.median(whole["plain"])
            table.add_row(label, f"{pct(hook, 0.5) * 1000:.1f} µs", f"{pct(hook, 0.9) * 1000:.1f} µs",
                          f"{pct(hook, 0.99):.3f} ms", f"{on:.3f} ms", f"{off:.3f} ms", f"{on - off:+.3f} ms",
                          str(found["queued"]))  # fmt: skip
    console.print(table)
    console.print("target: ≤ 0.05 ms p50 added (sampling and enqueue only; scoring runs in the workers)")


if __name__ == "__main__":
    main()
