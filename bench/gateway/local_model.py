"""Local-model throughput: tokens/s through Keel (HTTP, auth, tracing) vs xllamacpp called directly.

Both use the same GGUF, the same llama.cpp parameters and the same greedy request; each side
runs alone (one model in memory at a time). Reports the median of --runs.

    python bench/gateway/local_model.py [--model qwen2.5-coder-0.5b-instruct] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from keel.config import load_settings
from keel.providers.local_llama import _start_server
from keel.providers.modelfiles import resolve_model_file

PROMPT = "Write a short paragraph explaining what a circuit breaker does in a web service."
console = Console(width=150)


def direct(model: str, runs: int, max_tokens: int, home: Path, stream: bool = False) -> list[tuple[int, float]]:
    spec = load_settings(None).local_models[model]
    server = _start_server(resolve_model_file(model, spec, home), spec)
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens, "temperature": 0}
    server.handle_chat_completions(dict(body))  # warm up
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        if stream:
            chunks: list[dict[str, object]] = []

            def on_chunk(chunk: dict[str, object], sink: list[dict[str, object]] = chunks) -> bool:
                sink.append(chunk)
                return False  # keep generating

            server.handle_chat_completions(
                {**body, "stream": True, "stream_options": {"include_usage": True}}, on_chunk
            )
            tokens = int(chunks[-1]["usage"]["completion_tokens"])  # type: ignore[index]
        else:
            tokens = int(server.handle_chat_completions(dict(body))["usage"]["completion_tokens"])
        out.append((tokens, time.perf_counter() - start))
    del server
    return out


def through_keel(
    model: str, runs: int, max_tokens: int, home: Path, stream: bool, extra: tuple[str, ...] = ()
) -> list[tuple[int, float]]:
    env = {**os.environ, "KEEL_HOME": str(home), "KEEL_LOCAL_MODEL": model}
    keel = str(Path(sys.executable).parent / "keel")
    key = subprocess.run(
        [keel, "keys", "create", "--tenant", "bench"], env=env, capture_output=True, text=True, check=True
    ).stdout.split()[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [keel, "serve", "--port", str(port), *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"authorization": f"Bearer {key}"}
    body = {
        "model": "local",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        "stream_options": {"include_usage": True},
    }
    try:
        deadline = time.time() + 120
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        out = []
        with httpx.Client(timeout=300) as client:
            for i in range(runs + 1):
                start = time.perf_counter()
                if stream:
                    tokens = 0
                    with client.stream("POST", url, json=body, headers=headers) as r:
                        for line in r.iter_lines():
                            if '"usage"' in line and '"completion_tokens"' in line:
                                import orjson

                                tokens = orjson.loads(line[6:])["usage"]["completion_tokens"]
                else:
                    tokens = client.post(url, json=body, headers=headers).json()["usage"]["completion_tokens"]
                if i:  # the first call loads and warms the model
                    out.append((tokens, time.perf_counter() - start))
        return out
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="keel-bench-local-"))
    rows = {
        "xllamacpp direct, non-streamed": direct(args.model, args.runs, args.max_tokens, home),
        "Keel HTTP, non-streamed": through_keel(args.model, args.runs, args.max_tokens, home, stream=False),
        "xllamacpp direct, streamed (callback)": direct(args.model, args.runs, args.max_tokens, home, stream=True),
        "Keel HTTP, streamed": through_keel(args.model, args.runs, args.max_tokens, home, stream=True),
    }
    table = Table(title=f"local model {args.model}: {args.max_tokens} greedy tokens, median of {args.runs}")
    for col in ("path", "tokens", "seconds", "tokens/s", "vs direct (same mode)"):
        table.add_column(col, justify="right")
    base = 1.0
    for name, samples in rows.items():
        rate = statistics.median(t / s for t, s in samples)
        if name.startswith("xllamacpp"):
            base = rate
        table.add_row(
            name,
            str(samples[0][0]),
            f"{statistics.median(s for _, s in samples):.2f}",
            f"{rate:.1f}",
            f"{100 * rate / base:.1f}%",
        )
    console.print(table)


if __name__ == "__main__":
    main()
