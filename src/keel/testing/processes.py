"""``keel serve`` as a real process on a free loopback port, for benchmarks and end-to-end tests of
several replicas: each gets its own KEEL_HOME, as a separate host would.

    replicas = [serve_keel(config, tmp / f"host{i}", env) for i in range(3)]
    try: …  # each is (process, "http://127.0.0.1:PORT/v1")
    finally: stop_keel(replicas)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from keel.testing.redis_server import free_port

Served = tuple[subprocess.Popen[bytes], str]


def serve_keel(config: Path, home: Path, env: dict[str, str], *, no_auth: bool = False, timeout: float = 60) -> Served:
    """Start ``keel serve`` and wait until ``/healthz`` answers; its (process, base URL)."""
    port = free_port()
    cmd = [sys.executable, "-m", "keel", "serve", "--port", str(port), "--no-warm", "-c", str(config)]
    if no_auth:
        cmd.append("--no-auth")
    full = {**env, "KEEL_HOME": str(home), "KEEL_TESTING": "1"}  # a test process: the fakes are offered
    proc = subprocess.Popen(cmd, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(base.removesuffix("/v1") + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            said = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"keel serve did not start: {said}")
        time.sleep(0.1)


def stop_keel(served: list[Served]) -> None:
    for proc, _ in served:
        proc.terminate()
    for proc, _ in served:
        proc.wait(timeout=20)
