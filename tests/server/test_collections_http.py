"""Retrieval over HTTP: collections, documents (upload, list, delete) and search."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx

from tests.rag.test_loading_chunking import make_pdf
from tests.server.conftest import Gateway


def call(gateway: Gateway, method: str, path: str, body: object = None) -> httpx.Response:
    return httpx.request(method, f"{gateway.base_url}{path}", json=body, headers=gateway.headers(), timeout=60)


def test_collection_lifecycle(gateway: Gateway, tmp_path: Path) -> None:
    assert call(gateway, "POST", "/collections", {"name": "handbook"}).status_code == 201
    make_pdf(tmp_path / "g.pdf", ["Refunds take five business days.", "Invoices are monthly."])
    docs = [
        {"id": "keys.md", "kind": "md", "text": "# Keys\n\n## Rotate\nRotate API keys from the Settings page."},
        {
            "id": "faq/refunds.pdf",
            "kind": "pdf",
            "content_base64": base64.b64encode((tmp_path / "g.pdf").read_bytes()).decode(),
        },
        {"id": "empty.txt", "kind": "txt", "text": "   "},
    ]
    report = call(gateway, "POST", "/collections/handbook/documents", {"documents": docs}).json()
    assert sorted(report["indexed"]) == ["faq/refunds.pdf", "keys.md"]
    assert report["skipped"] == [{"id": "empty.txt", "reason": "no text to index (the document is empty)"}]
    again = call(gateway, "POST", "/collections/handbook/documents", {"documents": docs[:1]}).json()
    assert again["unchanged"] == ["keys.md"]
    hits = call(gateway, "POST", "/collections/handbook/search", {"query": "how long do refunds take", "top_k": 2})
    top = hits.json()["data"][0]
    assert top["doc_id"] == "faq/refunds.pdf" and top["page"] == 1
    body = {"query": "refunds and keys", "top_k": 2, "group_by": "document", "per_document": 1}
    grouped = call(gateway, "POST", "/collections/handbook/search", body).json()["data"]
    assert {d["doc_id"] for d in grouped} == {"faq/refunds.pdf", "keys.md"} and [d["rank"] for d in grouped] == [1, 2]
    assert all(len(d["chunks"]) == 1 and "doc_id" not in d["chunks"][0] and d["score"] > 0 for d in grouped)
    listed = call(gateway, "GET", "/collections/handbook/documents").json()["data"]
    assert [d["doc_id"] for d in listed] == ["faq/refunds.pdf", "keys.md"]
    assert call(gateway, "DELETE", "/collections/handbook/documents/faq/refunds.pdf").json()["deleted"]
    after = call(gateway, "POST", "/collections/handbook/search", {"query": "refunds", "top_k": 5}).json()["data"]
    assert all(h["doc_id"] != "faq/refunds.pdf" for h in after)
    names = [c["name"] for c in call(gateway, "GET", "/collections").json()["data"]]
    assert names == ["handbook"]


def test_collection_errors(gateway: Gateway) -> None:
    r = call(gateway, "POST", "/collections/nope/search", {"query": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
    r = call(gateway, "POST", "/collections", {"name": "../../etc"})
    assert r.status_code == 400 and "not a collection name" in r.json()["error"]["message"]
    call(gateway, "POST", "/collections", {"name": "c1"})
    for body, param in [
        ({"query": ""}, "query"),
        ({"query": "x", "top_k": 0}, "top_k"),
        ({"query": "x", "mode": "magic"}, "mode"),
        ({"query": "x", "group_by": "page"}, "group_by"),
        ({"query": "x", "per_document": 0}, "per_document"),
    ]:
        r = call(gateway, "POST", "/collections/c1/search", body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param
    for body, param in [
        ({"documents": []}, "documents"),
        ({"documents": [{"id": "a"}]}, "documents[0]"),
        ({"documents": [{"id": "a", "kind": "exe", "text": "x"}]}, "documents[0].kind"),
        ({"documents": [{"id": "a", "kind": "pdf", "content_base64": "!!!"}]}, "documents[0].content_base64"),
        ({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, "documents"),
    ]:
        r = call(gateway, "POST", "/collections/c1/documents", body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    r = call(gateway, "DELETE", "/collections/c1/documents/ghost.md")
    assert r.status_code == 404
    r = httpx.get(f"{gateway.base_url}/collections")
    assert r.status_code == 401


def test_a_collections_reranker_applies_to_search(gateway: Gateway, tmp_path: Path) -> None:
    from tests.rag.test_rerank import tiny_cross_encoder

    model, tokenizer = tiny_cross_encoder(tmp_path / "ce.onnx", "money")
    created = call(gateway, "POST", "/collections", {"name": "rr", "rerank": f"cross-encoder:{model}:{tokenizer}"})
    assert created.status_code == 201 and created.json()["rerank"].startswith("cross-encoder:")
    docs = [
        {"id": f"d{i}.md", "kind": "md", "text": f"# Budget {i}\n\nThe budget report {'money ' * i}covers spend."}
        for i in range(4)
    ]
    call(gateway, "POST", "/collections/rr/documents", {"documents": docs})
    hits = call(gateway, "POST", "/collections/rr/search", {"query": "budget report", "top_k": 4}).json()["data"]
    assert [h["doc_id"] for h in hits] == ["d3.md", "d2.md", "d1.md", "d0.md"]  # ordered by the cross-encoder
    bad = call(gateway, "POST", "/collections", {"name": "rr2", "rerank": "magic"})
    assert bad.status_code == 400 and "unknown reranker" in bad.json()["error"]["message"]


def test_search_filters_over_http(gateway: Gateway) -> None:
    call(gateway, "POST", "/collections", {"name": "f"})
    docs = [
        {"id": "faq/a.md", "kind": "md", "text": "# Refunds\n\nRefunds take five days."},
        {"id": "guide/b.txt", "kind": "txt", "text": "Refunds are handled by the billing team."},
    ]
    call(gateway, "POST", "/collections/f/documents", {"documents": docs})
    hits = call(gateway, "POST", "/collections/f/search", {"query": "refunds", "filters": {"doc_prefix": "guide/"}})
    assert [h["doc_id"] for h in hits.json()["data"]] == ["guide/b.txt"]
    hits = call(gateway, "POST", "/collections/f/search", {"query": "refunds", "filters": {"kinds": ["md"]}})
    assert [h["doc_id"] for h in hits.json()["data"]] == ["faq/a.md"]
    bad = call(gateway, "POST", "/collections/f/search", {"query": "refunds", "filters": {"colour": "red"}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "filters.colour"
    bad = call(gateway, "POST", "/collections/f/search", {"query": "refunds", "filters": {"kinds": ["exe"]}})
    assert bad.status_code == 400 and "unknown document kind" in bad.json()["error"]["message"]
