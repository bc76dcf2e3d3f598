"""What the crash journal adds to a call, in process: the gateway service calling the scripted
provider (no delay) 3,000 times, not streamed and streamed, with ``tracing.journal`` on and off,
interleaved over six rounds in one run; each figure is the median of the rounds' medians.

    python bench/store/journal_overhead.py
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
from keel.types import CallContext, ChatRequest

BASE = "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"
CONFIGS = {"journal on": BASE, "journal off": BASE + "tracing: {journal: false}\n"}
CALLS, ROUNDS, WARM = 3000, 6, 300


async def timed(config: str, home: Path, stream: bool) -> float:
    service = build_service(settings_from_yaml(parse_yaml(config, "bench.yaml")), home)
    out = []
    try:
        for i in range(CALLS + WARM):
            ctx = CallContext(tenant="acme", user=f"u{i % 50}")
            messages = [{"role": "user", "content": "hello"}]
            req = ChatRequest(model="m", messages=messages, max_tokens=50, ctx=ctx, stream=stream)
            t0 = time.perf_counter()
            if stream:
                async for _ in service.chat_stream(req):
                    pass
            else:
                await service.chat(req)
            if i >= WARM:
                out.append((time.perf_counter() - t0) * 1e6)
    finally:
        await close_service(service)
    return statistics.median(out)


async def main() -> None:
    table = Table(title=f"crash journal on vs off (µs per call; median of {ROUNDS} rounds of {CALLS:,})")
    for col in ("call", *CONFIGS, "added"):
        table.add_column(col)
    with tempfile.TemporaryDirectory() as t:
        for stream in (False, True):
            got: dict[str, list[float]] = {name: [] for name in CONFIGS}
            for r in range(ROUNDS):
                for name, config in CONFIGS.items():
                    got[name].append(await timed(config, Path(t) / f"{name}-{r}-{stream}", stream))
            on, off = (statistics.median(got[n]) for n in CONFIGS)
            table.add_row("streamed" if stream else "not streamed", f"{on:.1f}", f"{off:.1f}", f"{on - off:+.1f}")
    Console().print(table)


if __name__ == "__main__":
    asyncio.run(main())
