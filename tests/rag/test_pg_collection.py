"""A collection on Postgres behaves like the embedded one, and the switch is configuration only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keel.rag import ingest
from keel.rag.embedder import LocalMiniLM
from keel.rag.pg_collection import PgCollection


def test_ingest_search_sync_on_postgres(conn: Any, folder: Path, minilm: LocalMiniLM) -> None:
    col = PgCollection.create(conn, "docs", minilm)
    report = ingest(col, [folder])
    assert sorted(report.indexed) == ["billing.md", "guide/kafka.txt", "keys.md"] and report.chunks == 4
    assert sorted(ingest(col, [folder]).unchanged) == ["billing.md", "guide/kafka.txt", "keys.md"]
    top = col.search("how do I rotate my API key?", top_k=2)[0]
    assert top.doc_id == "keys.md" and top.heading_path == ["API keys", "Rotating"]
    assert (folder / "keys.md").read_text()[top.start : top.end] == top.text
    (folder / "guide" / "kafka.txt").unlink()
    assert ingest(col, [folder], sync=True).removed == ["guide/kafka.txt"]
    assert all(f.doc_id != "guide/kafka.txt" for f in col.search("kafka partitions", top_k=5))
    assert [d["doc_id"] for d in col.list_documents()] == ["billing.md", "keys.md"]


def test_a_failed_document_rolls_back_everything(conn: Any, folder: Path, minilm: LocalMiniLM) -> None:
    col = PgCollection.create(conn, "atomic", minilm)
    ingest(col, [folder])
    (folder / "keys.md").write_text("# API keys\n\nCompletely new text.\n")
    original = col.vectors.add

    def broken(ids: Any, vectors: np.ndarray) -> None:
        raise RuntimeError("disk full")

    col.vectors.add = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        ingest(col, [folder])
    col.vectors.add = original  # type: ignore[method-assign]
    assert "24 hours" in " ".join(f.text for f in col.search("rotate api key", top_k=3))
    chunks = conn.execute("SELECT count(*) FROM keel_rag_chunks WHERE collection = 'atomic'").fetchone()[0]
    postings = conn.execute("SELECT count(DISTINCT chunk_id) FROM keel_bm25_docs WHERE collection = 'atomic'")
    assert chunks == postings.fetchone()[0] == 4


def test_the_cli_moves_to_postgres_by_configuration(pg_uri: str, folder: Path, tmp_path: Path) -> None:
    config = tmp_path / "keel.yaml"
    config.write_text('retrieval:\n  backend: postgres\n  postgres_url: {"$env": "KEEL_TEST_PG"}\n')
    env = {**os.environ, "KEEL_HOME": str(tmp_path / "home"), "KEEL_TEST_PG": pg_uri, "COLUMNS": "200"}

    def keel(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keel", *args, "-c", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert keel("ingest", "pgdocs", str(folder)).returncode == 0
    result = keel("search", "pgdocs", "refund days", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["doc_id"] == "billing.md"
    assert "pgdocs" in keel("collections").stdout
    assert not (tmp_path / "home" / "keel.db").exists()  # nothing went to the embedded store
    missing = subprocess.run(
        [sys.executable, "-m", "keel", "collections", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "KEEL_TEST_PG": "postgresql://nobody@127.0.0.1:9/none"},
    )
    assert missing.returncode == 2 and "cannot connect to the retrieval database" in missing.stderr
