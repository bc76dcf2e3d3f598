from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from keel.server import build_app
from keel.testing import FaultServer
from tests.conftest import RunningServer, greet_project, make_settings, new_key, no_sleep


def gateway_config(primary: FaultServer, secondary: FaultServer) -> str:
    return f"""
server: {{max_body_bytes: 65536}}
deployments:
  primary:
    provider: openai
    model: gpt-4o-mini
    base_url: "{primary.base_url}"
    context_window: 8000
    timeout: {{first_token: 0.5, total: 3}}
    breaker: {{failures: 3, cooldown_s: 30}}
  secondary: {{provider: anthropic, model: claude-haiku-4-5, base_url: "{secondary.base_url}"}}
models:
  main: {{deployments: [primary, secondary], retry: {{attempts: 2, base_delay_s: 0}}}}
  solo: {{deployments: [primary], retry: {{attempts: 2, base_delay_s: 0}}}}
"""


class Gateway:
    def __init__(self, server: RunningServer, key: str, home: Path) -> None:
        self.server = server
        self.key = key
        self.home = home
        self.base_url = server.base_url
        self.client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=20)

    def headers(self, **extra: str) -> dict[str, Any]:
        return {"authorization": f"Bearer {self.key}", **extra}


@pytest.fixture
def gateway(home: Path, upstream: FaultServer, upstream2: FaultServer) -> Iterator[Gateway]:
    app = build_app(make_settings(gateway_config(upstream, upstream2)), home, sleep=no_sleep)
    key, _ = new_key(home, "acme")
    with RunningServer(app) as server:
        yield Gateway(server, key, home)


@contextmanager
def greet_server(base: Path, config: Callable[[Path, str], str]) -> Iterator[tuple[RunningServer, Path, FaultServer]]:
    """``keel serve``'s app on loopback for a module's tests: a greet project under ``base``, a fault
    upstream and KEEL_HOME set; ``config(project root, upstream URL)`` is its keel.yaml."""
    home, root = base / "home", greet_project(base / "project")
    mp = pytest.MonkeyPatch()
    mp.setenv("KEEL_HOME", str(home))
    try:
        with FaultServer() as upstream:
            app = build_app(make_settings(config(root, upstream.base_url)), home)
            with RunningServer(app) as server:
                yield server, home, upstream
    finally:
        mp.undo()
