from __future__ import annotations

from pathlib import Path

import pytest

from keel.gateway.runtime import close_service
from keel.rag import Collection, ingest
from keel.rag.answer import NOTHING_FOUND, answer, check_citations, select_sources
from keel.rag.embedder import LocalMiniLM
from keel.store import connect
from tests.conftest import scripted_service


@pytest.fixture
def setup(tmp_path: Path, home: Path):  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text(
        "# Refunds\n\n## Timing\nRefunds take five business days.\n\n## Method\nRefunds go back to the original card.\n"
    )
    (docs / "keys.md").write_text("# Keys\n\nRotate API keys from the Settings page.\n")
    collection = Collection.create(connect(home / "keel.db"), "docs", LocalMiniLM())
    ingest(collection, [docs])
    service, provider = scripted_service(home)
    return service, collection, provider


async def test_answer_cites_checked_sources(setup) -> None:  # type: ignore[no-untyped-def]
    service, collection, provider = setup
    provider.enqueue("Refunds take five business days and go to the original card [1]. See also [7].")
    result = await answer(service, collection, "How long do refunds take?", model="m", top_k=3)
    system = provider.calls[-1].messages[0]["content"]
    assert "[1] refunds.md — Refunds › Timing" in system and "I don't know" in system
    # the page's two neighbouring sections are one source, spanning both
    assert len(result.sources) == 1 and "original card" in result.sources[0].text
    assert [c.number for c in result.citations] == [1, 7]
    assert result.invalid_citations == [7]
    assert result.citations[0].source is not None and result.citations[0].source.doc_id == "refunds.md"
    assert result.trace_id == provider.calls[-1].ctx.trace_id
    data = result.as_dict()
    assert data["sources"][0]["heading_path"] and data["sources"][0]["start"] >= 0
    await close_service(service)


async def test_nothing_relevant_means_no_model_call(setup) -> None:  # type: ignore[no-untyped-def]
    service, collection, provider = setup
    result = await answer(service, collection, "Explain quantum chromodynamics on a lattice", model="m", min_score=0.4)
    assert result.found_nothing and result.text == NOTHING_FOUND and result.says_dont_know
    assert provider.calls == []
    await close_service(service)


def test_citation_parsing_and_budget() -> None:
    assert check_citations("no citations here", []) == []
    fake = [object()] * 2
    cited = check_citations("a [2] b [1] c [2] d [12]", fake)  # type: ignore[arg-type]
    assert [(c.number, c.valid) for c in cited] == [(2, True), (1, True), (12, False)]

    class F:
        def __init__(self, n: int) -> None:
            self.text = "x" * n

    picked = select_sources([F(400), F(400), F(400)], budget_tokens=230)  # type: ignore[list-item]
    assert len(picked) == 2
    assert len(select_sources([F(10_000)], budget_tokens=10)) == 1  # the best source always goes in


async def test_uncited_sentences_are_cited_from_their_source_unless_switched_off(setup) -> None:  # type: ignore[no-untyped-def]
    service, collection, provider = setup
    provider.enqueue("Refunds take five business days.", "Refunds take five business days.")
    cited = await answer(service, collection, "How long do refunds take?", model="m", top_k=3)
    number = next(i for i, s in enumerate(cited.sources, 1) if "five business days" in s.text)
    assert cited.text == f"Refunds take five business days [{number}]." and cited.attributed == 1
    assert [c.valid for c in cited.citations] == [True] and cited.as_dict()["attributed"] == 1
    plain = await answer(service, collection, "How long do refunds take?", model="m", top_k=3, cite=False)
    assert plain.text == "Refunds take five business days." and plain.citations == [] and plain.attributed == 0
    await close_service(service)
