"""What OpenTelemetry export adds to a call, in process: the gateway service calling the scripted
provider (no delay) 3,000 times with tracing off, then with `tracing.otlp` exporting to a real OTLP/HTTP
receiver on loopback (keel.testing.otlp), interleaved over several rounds in one run. Target: ≤ 0.05 ms
added at p50.

    python bench/dashboard/otel_overhead.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from keel.config import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.gateway.runtime import build_service, close_service
from keel.testing.otlp import OTLPReceiver
from keel.types import CallContext, ChatRequest

BASE = "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"
CALLS, ROUNDS, WARM = 3000, 5, 300


async def timed(config: str, home: Path) -> list[float]:
    service = build_service(settings_from_yaml(parse_yaml(config, "bench.yaml")), home)
    out = []
    try:
        for i in range(CALLS + WARM):
            ctx = CallContext(tenant="acme", user=f"u{i % 50}")
            req = ChatRequest(model="m", messages=[{"role": "user", "content": "hello"}], max_tokens=50, ctx=ctx)
            t0 = time.perf_counter()
            await service.chat(req)
            if i >= WARM:
                out.append((time.perf_counter() - t0) * 1e6)
    finally:
        await close_service(service)
    return out


async def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory() as t, OTLPReceiver() as collector:
        runs: dict[str, list[float]] = {"off": [], "otlp": []}
        configs = {"off": BASE, "otlp": BASE + f"tracing: {{otlp: {{endpoint: '{collector.endpoint}'}}}}\n"}
        for r in range(ROUNDS):
            for name, config in configs.items():
                runs[name].append(statistics.median(await timed(config, Path(t) / f"{name}{r}")))
        spans = len(collector.spans)
    table = Table(title=f"OTLP export on vs off (µs per call, median of each of {ROUNDS} rounds of {CALLS:,})")
    table.add_column("tracing")
    table.add_column("p50 per round")
    table.add_column("median")
    for name, medians in runs.items():
        table.add_row(name, " ".join(f"{m:.0f}" for m in medians), f"{statistics.median(medians):.1f}")
    console.print(table)
    added = statistics.median(runs["otlp"]) - statistics.median(runs["off"])
    console.print(f"added: {added / 1000:+.3f} ms p50 (target ≤ 0.05 ms); the receiver decoded {spans:,} spans")


if __name__ == "__main__":
    asyncio.run(main())
