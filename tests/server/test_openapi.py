"""``/openapi.json``: every route is in it, its bodies are the validators' own trees, and a schema
fuzzer (schemathesis) run against it on a real server finds no 5xx and no answer outside the
document. Bounded (a few examples per operation, derandomised); ``bench/reliability`` runs more."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from keel.server.openapi import OPERATIONS, routes_of
from keel.server.validate import CHAT, MAX_EMBED_INPUTS
from tests.conftest import RunningServer, new_key
from tests.server.conftest import greet_server
from tests.server.test_fuzz import CONFIG


class Served:
    def __init__(self, server: RunningServer, key: str) -> None:
        self.server, self.key = server, key
        self.auth = {"authorization": f"Bearer {key}"}
        self.root = server.base_url.removesuffix("/v1")
        self._schema: Any = None

    def schema(self) -> Any:
        if self._schema is None:
            self._schema = schemathesis.openapi.from_url(f"{self.root}/openapi.json")
        return self._schema

    def document(self) -> dict[str, Any]:
        got = httpx.get(f"{self.root}/openapi.json")  # no key needed: the contract is public
        assert got.status_code == 200
        return dict(got.json())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    def config(root: Path, url: str) -> str:  # the built-in aliases reach the fake too
        fake = f"{{provider: openai, model: gpt-4o-mini, base_url: '{url}'}}"
        local = f"deployments:\n  local: {fake}\n  local-accurate: {fake}\n"  # with or without keel[accurate]
        return CONFIG.format(root=root, url=url).replace("deployments:\n", local)

    with greet_server(tmp_path_factory.mktemp("openapi"), config) as (server, home, _):
        key, _ = new_key(home, "acme")
        yield Served(server, key)


def test_every_route_is_in_the_document_and_nothing_else(served: Served) -> None:
    doc = served.document()
    published = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served_routes = set(routes_of(served.server.app.asgi.routes))
    assert served_routes - published == set(), "a route without an OPERATIONS entry is missing from /openapi.json"
    assert published == served_routes
    assert set(OPERATIONS) == served_routes, "an OPERATIONS entry names a route the app does not serve"
    assert doc["openapi"] == "3.1.0"


def test_bodies_are_the_validators_trees(served: Served) -> None:
    schemas = served.document()["components"]["schemas"]
    chat = schemas["ChatCompletionRequest"]
    assert chat["properties"]["model"].pop("enum") == ["local", "fast", "accurate", "up"]  # its chat aliases
    assert {"all-minilm-l6-v2", "up"} <= set(schemas["EmbeddingRequest"]["properties"]["model"]["enum"])
    assert "mode" not in chat["properties"]  # this gateway has no modes
    tree = CHAT.published()
    del tree["properties"]["mode"]
    assert chat == tree
    assert chat["required"] == ["model", "messages"]
    assert chat["properties"]["temperature"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 2}
    role = chat["properties"]["messages"]["items"]["properties"]["role"]
    assert "user" in role["enum"] and "nobody" not in role["enum"]
    embed_input = schemas["EmbeddingRequest"]["properties"]["input"]["anyOf"][1]
    assert embed_input["maxItems"] == MAX_EMBED_INPUTS
    assert schemas["FeedbackCreate"]["additionalProperties"] is False


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,  # what the document calls invalid is refused with a 4xx
]


TAKES_INPUT = {r for r, op in OPERATIONS.items() if op.body is not None or "{" in r[1] or r[1] == "/v1/traces"}
CASES = [(r, GenerationMode.POSITIVE) for r in sorted(OPERATIONS)]
CASES += [(r, GenerationMode.NEGATIVE) for r in sorted(TAKES_INPUT)]  # nothing to get wrong in the others


@pytest.mark.parametrize(("route", "mode"), CASES, ids=[f"{' '.join(r)} {m.value}" for r, m in CASES])
def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(
    served: Served, route: tuple[str, str], mode: GenerationMode
) -> None:
    method, path = route
    operation = served.schema()[path][method]

    @settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode))
    def run(case: Any) -> None:
        case.call_and_validate(headers=served.auth, checks=CHECKS)

    run()
