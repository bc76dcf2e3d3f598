"""`keel serve --workers N`: several processes on one port and one store; a config whose limits would
multiply across them is refused at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from keel.config.loader import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.errors import ConfigError
from keel.server.worker import check_workers
from keel.store import Store, db_path
from keel.testing.redis_server import free_port
from tests.cli.test_cli import SCRIPTED, keel


def test_limits_that_would_multiply_across_workers_are_refused(tmp_path: Path) -> None:
    limited = settings_from_yaml(parse_yaml(SCRIPTED + "limits:\n  per-key: {per: key, rpm: 60}\n", "k.yaml"))
    check_workers(limited, 1)  # one process: its own window is the whole truth
    with pytest.raises(ConfigError, match="needs a shared counter"):
        check_workers(limited, 2)
    config = tmp_path / "keel.yaml"
    config.write_text(SCRIPTED + "limits:\n  per-key: {per: key, rpm: 60}\n")
    out = keel(tmp_path, "serve", "--workers", "2", "--port", str(free_port()), "-c", str(config))
    assert out.returncode != 0 and "ledger: {backend: redis" in out.stderr and "Traceback" not in out.stderr


def test_two_workers_serve_one_port_and_one_store(tmp_path: Path) -> None:
    config = tmp_path / "keel.yaml"
    config.write_text(SCRIPTED + "default_model: fast\n")
    key = keel(tmp_path, "keys", "create", "--tenant", "acme", "-c", str(config)).stdout.split()[0]
    port = free_port()
    env = {**os.environ, "KEEL_HOME": str(tmp_path)}
    env.pop("KEEL_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "keel", "serve", "--workers", "2", "--port", str(port), "--no-warm", "-c", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base.removesuffix('/v1')}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "keel serve --workers 2 did not start"
            time.sleep(0.1)
        body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
        auth = {"authorization": f"Bearer {key}"}
        with httpx.Client(headers=auth, timeout=30) as client:  # new connections land on either worker
            codes = [client.post(f"{base}/chat/completions", json=body, headers={"connection": "close"}).status_code
                     for _ in range(30)]  # fmt: skip
        assert codes == [200] * 30
        time.sleep(1.0)  # the writers' flush interval
        with Store.at(db_path(tmp_path)) as store:
            assert store.traces.count(tenant="acme") == 30
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) >= 2
    finally:
        proc.terminate()
        proc.wait(20)
