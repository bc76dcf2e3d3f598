from __future__ import annotations

from pathlib import Path

import pytest

from keel.features.pipeline import FeaturePipeline
from keel.gateway.runtime import build_service, close_service
from keel.rag import ingest
from keel.rag.backends import Collections
from keel.rag.embedder import LocalMiniLM
from keel.store import Store, db_path
from keel.testing import ScriptedProvider
from tests.conftest import make_settings

PROMPT = """---
description: Answer a support question
params: {max_tokens: 200}
inputs:
  question: {type: str}
---
[system]
You are Acme support.
[user]
{{ question }}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for folder in ("features", "prompts", "schemas", "docs"):
        (tmp_path / folder).mkdir()
    (tmp_path / "prompts" / "support.md").write_text(PROMPT)
    (tmp_path / "prompts" / "extract.md").write_text("---\ninputs:\n  text: {type: str}\n---\nExtract: {{ text }}")
    (tmp_path / "features" / "support.yaml").write_text(
        "prompt: support\nmodel: m\nretrieval: {collection: handbook, top_k: 3, min_score: 0.2}\n"
    )
    (tmp_path / "features" / "extract.yaml").write_text(
        "prompt: extract\nmodel: m\noutput: {schema: schemas/person.json, retries: 1}\n"
    )
    (tmp_path / "features" / "guarded.yaml").write_text("prompt: support\nguards: {input: [injection]}\n")
    (tmp_path / "schemas" / "person.json").write_text(
        '{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}'
    )
    (tmp_path / "docs" / "refunds.md").write_text("# Refunds\n\n## Timing\nRefunds take five business days.\n")
    return tmp_path


@pytest.fixture
async def pipeline(project: Path, home: Path):  # type: ignore[no-untyped-def]
    settings = make_settings(
        "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"
    )
    service = build_service(settings, home)
    collections = Collections(settings, home, LocalMiniLM())
    ingest(collections.get("handbook", create=True), [project / "docs"])
    store = Store.at(db_path(home))
    pipe = FeaturePipeline(service, project, store, collections=collections)
    provider = service.gateway.adapters["d"]
    assert isinstance(provider, ScriptedProvider)
    yield pipe, provider, home
    store.close()
    collections.close()
    await close_service(service)
