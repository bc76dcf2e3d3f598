"""Retrieval quality on Cranfield-1400, side by side with bm25s (Lucene BM25) in one run.

    python bench/retrieval/cranfield.py [--data ../shared/data/cranfield]     # both tables, ~4 min
    python bench/retrieval/cranfield.py --path doc                            # the doc-level table alone

The headline (``--path ingest``) takes the users' path: the 1,400 documents written as .txt files
(title line, blank line, abstract), ingested by the real ``keel ingest`` code with default chunking,
and searched through ``keel.rag.retrieval.retrieve`` (what ``keel search`` runs), once returning
chunks (mapped to their documents as they come) and once with ``group_by: document``, beside the
doc-level anchors of the same run: bm25s BM25, MiniLM whole-document vectors and their naive RRF.
A grid of the document aggregation's settings follows.

Parsing choices (stated, since they move the numbers): a document is its title + abstract
(.T + .W); queries are numbered by position 1..225 (the .I numbers are not); qrels grade g → gain
5 − g, grade −1 lines dropped; documents are retrieved whole (doc-level), MiniLM truncates at 256
tokens. Metrics: nDCG@10 (graded), recall@100, MRR@10.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from keel.config import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.rag import ingest
from keel.rag.analyzer import terms
from keel.rag.backends import Collections
from keel.rag.bm25 import BM25Index
from keel.rag.embedder import LocalMiniLM
from keel.rag.grouping import Aggregate
from keel.rag.retrieval import Query, retrieve
from keel.rag.retrieve import Feedback, convex, expand_terms, feedback_docs, rocchio, rrf
from keel.rag.vectors import ExactVectorIndex

ROOT = Path(__file__).resolve().parents[2]
console = Console(width=150)


def parse_fields(text: str) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    for block in re.split(r"^\.I ", text, flags=re.M)[1:]:
        head, *rest = block.split("\n", 1)
        fields = {"id": head.strip()}
        for match in re.finditer(
            r"^\.([TABW])\n(.*?)(?=^\.[TABWI] |^\.[TABW]\n|\Z)", rest[0] if rest else "", re.M | re.S
        ):
            fields[match.group(1)] = " ".join(match.group(2).split())
        records.append(fields)
    return records


def load(data: Path) -> tuple[list[str], list[str], list[str], dict[int, dict[str, int]]]:
    docs = parse_fields((data / "cran.all.1400").read_text(errors="replace"))
    queries = parse_fields((data / "cran.qry").read_text(errors="replace"))
    ids = [d["id"] for d in docs]
    texts = [f"{d.get('T', '')} {d.get('W', '')}".strip() for d in docs]
    qtexts = [q.get("W", "") for q in queries]
    qrels: dict[int, dict[str, int]] = defaultdict(dict)
    for line in (data / "cranqrel").read_text().split("\n"):
        parts = line.split()
        if len(parts) >= 3 and int(parts[2]) != -1:
            qrels[int(parts[0])][parts[1]] = 5 - int(parts[2])
    return ids, texts, qtexts, qrels


def metrics(ranked: list[list[str]], qrels: dict[int, dict[str, int]]) -> dict[str, float]:
    ndcg, recall, mrr = [], [], []
    for position, ranking in enumerate(ranked, start=1):
        hits = list(dict.fromkeys(ranking))  # a document counts once, at its first place
        rel = qrels.get(position, {})
        if not rel:
            continue
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(hits[:10]))
        ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(rel.values(), reverse=True)[:10]))
        ndcg.append(dcg / ideal if ideal else 0.0)
        recall.append(len(set(hits[:100]) & set(rel)) / len(rel))
        mrr.append(next((1 / (i + 1) for i, d in enumerate(hits[:10]) if d in rel), 0.0))
    return {
        "nDCG@10": float(np.mean(ndcg)),
        "recall@100": float(np.mean(recall)),
        "MRR@10": float(np.mean(mrr)),
        "queries": len(ndcg),
    }


def through_ingest(
    data: Path, queries: list[str], qrels: dict[int, dict[str, int]], anchors: Rows, *, grid: bool = True
) -> None:
    """The users' path: files → keel ingest → retrieve(), chunks and documents, beside the anchors."""
    rows: Rows = {k: v for k, v in anchors.items() if k in ANCHORS}
    with tempfile.TemporaryDirectory() as tmp:
        folder, home = Path(tmp) / "docs", Path(tmp) / "home"
        folder.mkdir()
        for d in parse_fields((data / "cran.all.1400").read_text(errors="replace")):
            (folder / f"{d['id']}.txt").write_text(f"{d.get('T', '').strip()}\n\n{d.get('W', '').strip()}\n")
        settings = settings_from_yaml(parse_yaml("{}\n", "bench"))  # the embedded default, default chunking
        with closing(Collections(settings, home)) as collections:
            col = collections.get("cranfield", create=True)
            t0 = time.perf_counter()
            report = ingest(col, [folder])
            console.print(
                f"ingested {len(report.indexed)} files → {report.chunks} chunks in {time.perf_counter() - t0:.0f} s"
            )

            def ranked(query: Query) -> tuple[list[list[str]], float, list[float]]:
                out, distinct, t = [], [], time.perf_counter()
                for q in queries:
                    found = asyncio.run(retrieve(col, replace(query, text=q)))
                    docs = [f.doc_id.removesuffix(".txt") for f in found]
                    firsts = list(dict.fromkeys(docs))  # a document once, at its best chunk's place
                    out.append(docs if query.group_by == "chunk" else firsts)
                    distinct.append(len(dict.fromkeys(docs[:10])) if query.group_by == "chunk" else len(firsts[:10]))
                return out, time.perf_counter() - t, distinct

            chunks, seconds, distinct = ranked(Query("", top_k=100))
            rows["Keel through ingest, group_by: chunk → their documents"] = (metrics(chunks, qrels), seconds)
            spread = {"chunks": statistics.mean(distinct)}
            grouped, seconds, distinct = ranked(Query("", top_k=100, group_by="document"))
            rows["Keel through ingest, group_by: document"] = (metrics(grouped, qrels), seconds)
            spread["documents"] = statistics.mean(distinct)
            show(rows, "Cranfield-1400 through keel ingest (128-token chunks), document level, one run")
            console.print(
                f"distinct documents in the top 10: {spread['chunks']:.1f} as chunks, {spread['documents']:.1f} grouped"
            )
            if not grid:
                return
            table = Table("damping", *[f"depth {d}" for d in DEPTHS], title="nDCG@10 by document aggregation (grid)")
            for damping in DAMPINGS:
                cells = []
                for depth in DEPTHS:
                    agg = Aggregate(damping, depth)
                    runs = [
                        [
                            f.doc_id.removesuffix(".txt")
                            for f in col.search(q, top_k=100, group_by="document", aggregate=agg)
                        ]
                        for q in queries
                    ]
                    cells.append(f"{metrics(runs, qrels)['nDCG@10']:.3f}")
                table.add_row(f"{damping:g}", *cells)
            console.print(table)


Rows = dict[str, tuple[dict[str, float], float]]
ANCHORS = ("bm25s (reference)", "Keel vector (MiniLM int8)", "Keel hybrid, RRF k=60")
DAMPINGS, DEPTHS = (0.0, 0.1, 0.2, 0.3, 0.5), (1, 2, 4)


def show(rows: Rows, title: str) -> None:
    table = Table(title=title)
    for col in ("retriever", "nDCG@10", "recall@100", "MRR@10", "seconds"):
        table.add_column(col, justify="right")
    for name, (m, seconds) in rows.items():
        shown = [f"{m[k]:.3f}" for k in ("nDCG@10", "recall@100", "MRR@10")]
        table.add_row(name, *shown, f"{seconds:.1f}" if seconds else "")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cranfield")
    parser.add_argument("--pool", type=int, default=100, help="candidates per retriever before fusion")
    parser.add_argument("--path", choices=["ingest", "doc"], nargs="+", default=["ingest", "doc"])
    parser.add_argument("--no-grid", action="store_true", help="skip the aggregation grid")
    args = parser.parse_args()
    ids, texts, queries, qrels = load(args.data)
    console.print(
        f"Cranfield: {len(ids)} documents, {len(queries)} queries, {sum(len(v) for v in qrels.values())} judgements"
    )
    rows: Rows = {}

    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    t0 = time.perf_counter()
    ref = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    ref.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    q_tokens = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
    results, _ = ref.retrieve(q_tokens, k=100, show_progress=False)
    rows["bm25s (reference)"] = (metrics([[ids[i] for i in row] for row in results], qrels), time.perf_counter() - t0)

    t0 = time.perf_counter()
    keyword = BM25Index()
    keyword.add(ids, texts)
    kw_hits = [keyword.search(q, args.pool) for q in queries]
    rows["Keel BM25"] = (metrics([[d for d, _ in h] for h in kw_hits], qrels), time.perf_counter() - t0)

    t0 = time.perf_counter()
    embedder = LocalMiniLM()
    vectors = ExactVectorIndex(embedder.dims)
    vectors.add(ids, embedder.embed(texts))
    qvecs = embedder.embed(queries)
    vec_hits = [vectors.search(v, args.pool) for v in qvecs]
    rows["Keel vector (MiniLM int8)"] = (
        metrics([[d for d, _ in h] for h in vec_hits], qrels),
        time.perf_counter() - t0,
    )

    fused = [rrf(k, v) for k, v in zip(kw_hits, vec_hits, strict=True)]
    rows["Keel hybrid, RRF k=60"] = (metrics([[h.chunk_id for h in f] for f in fused], qrels), 0.0)
    for alpha in (0.3, 0.4, 0.5):
        fused = [convex(k, v, alpha=alpha) for k, v in zip(kw_hits, vec_hits, strict=True)]
        rows[f"Keel hybrid, convex α={alpha}"] = (metrics([[h.chunk_id for h in f] for f in fused], qrels), 0.0)

    fb = Feedback()
    with_feedback = []
    for q, v, first in zip(queries, qvecs, (rrf(k, v) for k, v in zip(kw_hits, vec_hits, strict=True)), strict=True):
        top = feedback_docs(first, fb.docs)
        weights = expand_terms(
            Counter(terms(q)), keyword.term_counts(top), keyword.idf, n_terms=fb.terms, weight=fb.weight
        )
        moved = rocchio(v, [x for x in map(vectors.vector, top) if x is not None], fb.beta)
        with_feedback.append(rrf(keyword.search_weighted(weights, args.pool), vectors.search(moved, args.pool)))
    rows["Keel hybrid default: RRF + feedback"] = (
        metrics([[h.chunk_id for h in f] for f in with_feedback], qrels),
        0.0,
    )

    if "ingest" in args.path:
        through_ingest(args.data, queries, qrels, rows, grid=not args.no_grid)
    if "doc" in args.path:
        show(rows, "Cranfield-1400, doc-level (no chunking, one vector per document), one run")
    delta = rows["Keel BM25"][0]["nDCG@10"] - rows["bm25s (reference)"][0]["nDCG@10"]
    console.print(f"Keel BM25 − bm25s nDCG@10: {delta:+.4f} (target within ±0.01)")


if __name__ == "__main__":
    main()
