"""Retrieval speed: ingestion throughput (real pipeline, real local embedder) and hybrid query latency
and memory as a collection grows.

    python bench/retrieval/speed.py [--sizes 10000,100000] [--queries 200] [--ingest-docs 120]

Ingestion writes a synthetic handbook (Markdown, headings and paragraphs) and runs `keel.rag.ingest`.
For query scaling, chunks are synthesised straight into SQLite — Zipf-distributed English-like text
and random unit vectors, five chunks to a document — because embedding 100k chunks would take the
bench longer than the query measurement it exists for; the *search* path (load, BM25, query
embedding, vectors, fusion, feedback, dedup, materialising rows) is the real one. Memory is the
process RSS growth from loading the collection.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from keel.rag import Collection, ingest
from keel.rag.analyzer import terms
from keel.rag.embedder import LocalMiniLM
from keel.store import connect

console = Console(width=150)
PER_DOC = 5  # synthesised chunks per document, so grouping by document has something to group
WORDS = (
    "account api key rotate settings billing invoice refund payment card customer support ticket password "
    "login session token webhook event retry timeout error limit quota plan upgrade downgrade team member "
    "role permission admin export import report dashboard chart metric alert email notification schedule "
    "backup restore database cluster node region latency throughput storage bucket file upload download "
    "search index query filter sort page cursor version release deploy rollback feature flag experiment"
).split()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sentence(rng: random.Random, vocab: list[str], weights: list[float]) -> str:
    words = rng.choices(vocab, weights=weights, k=rng.randint(8, 18))
    return " ".join(words).capitalize() + "."


def bench_ingest(docs: int) -> tuple[int, float, int]:
    rng = random.Random(7)
    vocab = WORDS + [f"term{i}" for i in range(3000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    root = Path(tempfile.mkdtemp(prefix="keel-ingest-"))
    for d in range(docs):
        sections = []
        for s in range(5):
            paragraphs = ["\n".join([" ".join(sentence(rng, vocab, weights) for _ in range(4))]) for _ in range(3)]
            sections.append(f"## Section {s}\n\n" + "\n\n".join(paragraphs))
        (root / f"doc{d:04d}.md").write_text(f"# Document {d}\n\n" + "\n\n".join(sections))
    collection = Collection.create(connect(root / "k.db"), "bench", LocalMiniLM())
    start = time.perf_counter()
    report = ingest(collection, [root])
    seconds = time.perf_counter() - start
    tokens = sum(r[0] for r in collection.conn.execute("SELECT tokens FROM rag_chunks"))
    return report.chunks, seconds, tokens


def synthesise(path: Path, n: int, dims: int) -> None:
    rng = np.random.default_rng(11)
    vocab = WORDS + [f"term{i}" for i in range(20000)]
    probs = 1 / np.arange(1, len(vocab) + 1)
    probs /= probs.sum()
    conn = connect(path)
    conn.execute(
        "INSERT INTO rag_collections(name, created, embedder, dims, chunk_tokens, overlap) "
        "VALUES ('big', 0, 'all-minilm-l6-v2', ?, 200, 0)",
        (dims,),
    )
    conn.execute("BEGIN")
    batch = 5000
    for start in range(0, n, batch):
        rows, docs = [], []
        count = min(batch, n - start)
        vectors = rng.normal(size=(count, dims)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for i in range(count):
            idx = start + i
            text = " ".join(vocab[w] for w in rng.choice(len(vocab), size=60, p=probs))
            tf = Counter(terms(text))
            rows.append(
                (
                    "big",
                    f"d{idx // PER_DOC}#{idx % PER_DOC}",
                    f"d{idx // PER_DOC}",
                    idx % PER_DOC,
                    text,
                    "[]",
                    None,
                    0,
                    len(text),
                    60,
                    orjson.dumps(tf).decode(),
                    vectors[i].tobytes(),
                )
            )
            if idx % PER_DOC == 0:
                docs.append(("big", f"d{idx // PER_DOC}", f"d{idx // PER_DOC}.md", "md", "", "h", PER_DOC, 0.0))
        conn.executemany("INSERT INTO rag_chunks VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.executemany("INSERT INTO rag_documents VALUES (?,?,?,?,?,?,?,?)", docs)
    conn.execute("COMMIT")
    conn.close()


def bench_queries(n: int, queries: int, embedder: LocalMiniLM) -> dict[str, float]:
    path = Path(tempfile.mkdtemp(prefix="keel-scale-")) / "k.db"
    synthesise(path, n, embedder.dims)
    before = rss_mb()
    t0 = time.perf_counter()
    collection = Collection(connect(path), "big", embedder)
    load_s = time.perf_counter() - t0
    memory = rss_mb() - before
    rng = random.Random(3)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(3, 9))) + "?" for _ in range(queries)]
    for q in texts[:10]:
        collection.search(q, top_k=10)
    samples = []
    for q in texts:
        t = time.perf_counter()
        collection.search(q, top_k=10)
        samples.append((time.perf_counter() - t) * 1000)
    plain = []
    for q in texts[:100]:
        t = time.perf_counter()
        collection.search(q, top_k=10, feedback=None)
        plain.append((time.perf_counter() - t) * 1000)
    grouped = []
    for q in texts[:100]:
        t = time.perf_counter()
        collection.search(q, top_k=10, group_by="document")
        grouped.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {
        "p50_grouped": statistics.median(grouped),
        "load_s": load_s,
        "rss_mb": memory,
        "p50": statistics.median(samples),
        "p99": samples[int(len(samples) * 0.99) - 1],
        "p50_plain": statistics.median(plain),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest-docs", type=int, default=120)
    args = parser.parse_args()
    chunks, seconds, tokens = bench_ingest(args.ingest_docs)
    console.print(
        f"ingestion: {chunks} chunks ({tokens / chunks:.0f} tokens each on average, default budget) from "
        f"{args.ingest_docs} Markdown documents in {seconds:.1f} s → [bold]{chunks / seconds:.0f} chunks/s"
        f"[/bold], {tokens / seconds:,.0f} tokens/s (target ≥ 60 chunks/s)"
    )
    embedder = LocalMiniLM()
    table = Table(title="hybrid query latency (top 10, RRF + feedback + dedup), one process, this machine")
    for col in ("chunks", "load s", "memory MB", "p50 ms", "p99 ms", "p50 ms without feedback", "p50 ms by document"):
        table.add_column(col, justify="right")
    for size in (int(s) for s in args.sizes.split(",")):
        r = bench_queries(size, args.queries, embedder)
        table.add_row(
            f"{size:,}",
            f"{r['load_s']:.1f}",
            f"{r['rss_mb']:.0f}",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            f"{r['p50_plain']:.1f}",
            f"{r['p50_grouped']:.1f}",
        )
    console.print(table)
    console.print("targets at 100k chunks: p50 ≤ 25 ms, p99 ≤ 60 ms, memory ≤ 1 GB")


if __name__ == "__main__":
    main()
