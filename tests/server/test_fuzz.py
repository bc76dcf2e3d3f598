"""Property-based fuzzing of every JSON body the server takes — chat, embeddings, feature runs,
collections (create, documents, search) and feedback — against a real server on loopback with a
healthy upstream and a budget: no input gets a 5xx, every refusal has the OpenAI error shape, and a
refused request reserves and spends nothing. Bounded (a few hundred cases, derandomised) so the run
is the same every time; ``bench/reliability`` runs the long version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.store import Store, db_path
from tests.conftest import RunningServer, new_key
from tests.server.conftest import greet_server

CONFIG = """
project_root: '{root}'
server: {{max_body_bytes: 65536}}
deployments:
  up: {{provider: openai, model: gpt-4o-mini, base_url: "{url}", context_window: 8000}}
models:
  up: {{deployments: [up], retry: {{attempts: 1}}}}
default_model: up
budgets:
  fuzz: {{match: {{tenant: acme}}, usd: 1000}}
"""
FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
roles = st.sampled_from(["user", "system", "assistant", "tool", "nobody", [], {"a": 1}]) | json_values
contents = (
    st.text(max_size=40)
    | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}), max_size=2)
    | json_values
)
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": contents}), max_size=3) | json_values
chat_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["up", "up", "nope", ""]) | json_values, "messages": messages},
    optional={
        "max_tokens": st.integers(-5, 10**7) | json_values,
        "temperature": st.floats(-1, 3) | json_values,
        "stream": st.booleans() | json_values,
        "n": st.integers(0, 3),
        "user": st.text(max_size=10) | json_values,
        "metadata": json_values,
        "stream_options": json_values,
        "mode": json_values,
    },
)
embedding_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["up", "nope"]) | json_values,
        "input": st.text(max_size=20) | st.lists(st.text(max_size=10), max_size=3) | json_values,
    },
    optional={"encoding_format": st.sampled_from(["float", "base64", "hex"]) | json_values},
)
feature_bodies = st.fixed_dictionaries(
    {"inputs": st.fixed_dictionaries({"name": st.text(max_size=20) | json_values}) | json_values},
    optional={"user": json_values, "label": json_values, "stream": json_values},
)
collection_bodies = st.fixed_dictionaries(
    {"name": st.sampled_from(["docs", ""]) | st.text(max_size=10) | json_values},
    optional={"chunk_tokens": json_values | st.integers(0, 300), "overlap": json_values, "rerank": json_values},
)
document_bodies = st.fixed_dictionaries(
    {
        "documents": st.lists(
            st.fixed_dictionaries(
                {"id": st.text(max_size=10) | json_values},
                optional={
                    "kind": st.sampled_from(["md", "txt", "pdf", "doc"]) | json_values,
                    "text": st.text(max_size=60) | json_values,
                    "content_base64": st.text(max_size=12) | json_values,
                },
            ),
            max_size=2,
        )
        | json_values
    }
)
search_bodies = st.fixed_dictionaries(
    {"query": st.text(max_size=20) | json_values},
    optional={
        "top_k": st.integers(-2, 2000) | json_values,
        "mode": st.sampled_from(["hybrid", "vector", "x"]) | json_values,
        "min_score": json_values,
        "filters": json_values,
    },
)
feedback_bodies = st.fixed_dictionaries(
    {"trace_id": st.text(max_size=12) | json_values, "name": st.text(max_size=8) | json_values},
    optional={
        "value": json_values,
        "comment": json_values,
        "correction": json_values,
        "user": json_values,
        "extra": json_values,
    },
)
raw_bodies = st.binary(max_size=40) | st.sampled_from([b"", b"[]", b"null", b'{"a":', b"\xff\xfe", b"1" * 400])


class Fuzzed:
    def __init__(self, server: RunningServer, key: str, home: Path) -> None:
        self.server, self.key, self.home = server, key, home
        self.client = httpx.Client(base_url=server.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30)

    def spend(self) -> tuple[int, int]:
        with Store.at(db_path(self.home)) as store:
            usage = [store.budgets.usage(bucket) for bucket in store.budgets.buckets("fuzz")]
        return sum(u.spent_nusd for u in usage), sum(u.held_nusd for u in usage)

    def check(self, path: str, body: Any) -> None:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        before = self.spend()
        got = self.client.post(path, content=content, headers={"content-type": "application/json"})
        assert got.status_code < 500, (path, body, got.text)
        if got.status_code >= 400:
            error = got.json()["error"]
            assert isinstance(error["message"], str) and error["message"]
            assert isinstance(error["type"], str) and "code" in error and "param" in error
            assert self.spend() == before, ("a refused request moved the budget", path, body, got.text)
        assert self.spend()[1] == 0  # no hold outlives its request


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    def config(root: Path, url: str) -> str:
        return CONFIG.format(root=root, url=url)

    with greet_server(tmp_path_factory.mktemp("fuzz"), config) as (server, home, _):
        key, _ = new_key(home, "acme")
        fuzz = Fuzzed(server, key, home)
        assert fuzz.client.post("/collections", json={"name": "docs"}).status_code == 201
        yield fuzz
        fuzz.client.close()


BODIES = {
    "/chat/completions": chat_bodies,
    "/embeddings": embedding_bodies,
    "/features/greet/run": feature_bodies,
    "/collections": collection_bodies,
    "/collections/docs/documents": document_bodies,
    "/collections/docs/search": search_bodies,
    "/feedback": feedback_bodies,
}


@pytest.mark.parametrize("path", list(BODIES))
@FUZZ
@given(data=st.data())
def test_no_body_gets_a_5xx_or_moves_money(fuzzed: Fuzzed, path: str, data: st.DataObject) -> None:
    fuzzed.check(path, data.draw(BODIES[path] | raw_bodies, label="body"))
