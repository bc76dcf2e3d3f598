from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from keel.config.loader import settings_from_yaml
from keel.config.settings import KeelSettings
from keel.config.yamlfile import parse_yaml
from keel.server.app import KeelApp
from keel.testing import FaultServer


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEEL_CONFIG", raising=False)
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def upstream() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture
def upstream2() -> Iterator[FaultServer]:
    with FaultServer(reply="answer from the second upstream") as server:
        yield server


def greet_project(root: Path) -> Path:
    """A project with one feature, ``greet`` (prompt ``greet`` on the model ``up``, one input ``name``)."""
    (root / "features").mkdir(parents=True)
    (root / "prompts").mkdir()
    (root / "prompts" / "greet.md").write_text("---\ninputs:\n  name: {type: str}\n---\nGreet {{ name }}")
    (root / "features" / "greet.yaml").write_text("prompt: greet\nmodel: up\n")
    return root


def make_settings(text: str) -> KeelSettings:
    return settings_from_yaml(parse_yaml(text, "test.yaml"))


SCRIPTED_MODEL = "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"


def scripted_service(home: Path) -> tuple[Any, Any]:
    """A gateway whose model ``m`` is a ScriptedProvider (returned too, to enqueue replies)."""
    from keel.gateway.runtime import build_service
    from keel.testing import ScriptedProvider

    service = build_service(make_settings(SCRIPTED_MODEL), home)
    provider = service.gateway.adapters["d"]
    assert isinstance(provider, ScriptedProvider)
    return service, provider


async def no_sleep(seconds: float) -> None:
    SLEEPS.append(seconds)


SLEEPS: list[float] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningServer:
    def __init__(self, app: KeelApp) -> None:
        self.app = app
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app.asgi, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the Keel server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve() -> Callable[[KeelApp], RunningServer]:
    return RunningServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """A real redis-server on loopback for the whole session (flushed per test by ``redis_url``)."""
    from keel.testing.redis_server import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return str(redis_server.url)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A real PostgreSQL 16 with pgvector on a Unix socket (PyPI's pgserver), for the whole session."""
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    pytest.importorskip("pgserver", reason="pgserver (PostgreSQL + pgvector from PyPI) is not installed")
    from keel.testing.postgres_server import PostgresServer

    try:
        server = PostgresServer().start()
    except Exception as exc:  # pragma: no cover - reported as a skip with its reason
        pytest.skip(f"PostgreSQL could not start here: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL."""
    url = pg_server.database()
    yield url
    pg_server.drop(url)


def new_key(home: Path, tenant: str = "acme", name: str | None = None, *, role: str = "member") -> tuple[str, Any]:
    """A key for ``tenant`` in the embedded store under ``home`` (as `keel keys create` makes one)."""
    from keel.store import Store, db_path

    with Store.at(db_path(home)) as store:
        return store.keys.create(tenant, name, role=role)


def read_trace(home: Path, trace_id: str, tenant: str | None = None) -> Any:
    """A recorded trace from the embedded store under ``home`` (None if it is not there)."""
    from keel.store import Store, db_path

    with Store.at(db_path(home)) as store:
        return store.traces.get(trace_id, tenant=tenant)
