"""POST /v1/features/{name}/run over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keel.server import build_app
from keel.store import connect, db_path
from keel.store.keys import create_key
from keel.testing import FaultServer
from tests.conftest import RunningServer, make_settings


@pytest.fixture
def served(tmp_path: Path, home: Path, upstream: FaultServer) -> Iterator[tuple[str, str]]:
    root = tmp_path / "project"
    (root / "features").mkdir(parents=True)
    (root / "prompts").mkdir()
    (root / "prompts" / "greet.md").write_text("---\ninputs:\n  name: {type: str}\n---\nGreet {{ name }}")
    (root / "features" / "greet.yaml").write_text("prompt: greet\nmodel: up\n")
    settings = make_settings(
        f"project_root: '{root}'\ndeployments:\n  up: {{provider: openai, model: gpt-4o-mini, "
        f"base_url: '{upstream.base_url}'}}\nmodels:\n  up: {{deployments: [up]}}\n"
    )
    app = build_app(settings, home)
    key, _ = create_key(connect(db_path(home)), "acme")
    with RunningServer(app) as server:
        yield server.base_url, key


def test_run_a_feature_over_http(served: tuple[str, str]) -> None:
    base, key = served
    r = httpx.post(
        f"{base}/features/greet/run",
        json={"inputs": {"name": "Ada"}, "user": "u1"},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["answer"] == "You said: Greet Ada" and data["prompt_version"] == 1 and data["model"] == "up"
    assert r.headers["x-keel-trace-id"] == data["trace_id"] and data["cost_usd"] > 0


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/features/greet/run", {"inputs": {}}, 400, "missing input 'name'"),
        ("/features/greet/run", {"inputs": ["Ada"]}, 400, "'inputs' must be an object"),
        ("/features/greet/run", {"inputs": {"name": 3}}, 400, "input 'name' must be str"),
        ("/features/nope/run", {"inputs": {}}, 404, "no feature 'nope'"),
    ],
)
def test_feature_errors_keep_the_openai_shape(
    served: tuple[str, str], path: str, body: dict, status: int, fragment: str
) -> None:
    base, key = served
    r = httpx.post(f"{base}{path}", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == status and fragment in r.json()["error"]["message"]
    assert httpx.post(f"{base}{path}", json=body, timeout=30).status_code == 401
