"""How vector search grows: exact (numpy) vs HNSW (usearch, f16) at 10k, 100k and 1M vectors.

    python bench/retrieval/vectors.py [--sizes 10000,100000,1000000]

Clustered 384-d unit vectors (200 centres + noise, like sentence embeddings; uniform random vectors
are the pathological case for any ANN). Memory is RSS growth while building; recall@10 is against
exact search on the same 100 queries.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from keel.rag.hnsw import HNSWVectorIndex
from keel.rag.vectors import ExactVectorIndex

console = Console(width=150)
DIMS = 384


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def data(n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray, np.ndarray]:
    centers = rng.normal(size=(200, DIMS)).astype(np.float32)
    vectors = np.empty((n, DIMS), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centers[rng.integers(0, 200, m)] + 0.6 * rng.normal(size=(m, DIMS)).astype(np.float32)
        vectors[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    queries = centers[rng.integers(0, 200, 100)] + 0.6 * rng.normal(size=(100, DIMS)).astype(np.float32)
    return [f"v{i}" for i in range(n)], vectors, queries.astype(np.float32)


def measure(index: object, ids: list[str], vectors: np.ndarray, queries: np.ndarray) -> dict[str, object]:
    before = rss_mb()
    start = time.perf_counter()
    for s in range(0, len(ids), 100_000):
        index.add(ids[s : s + 100_000], vectors[s : s + 100_000])  # type: ignore[attr-defined]
    build = time.perf_counter() - start
    memory = rss_mb() - before
    times, results = [], []
    for q in queries:
        t = time.perf_counter()
        results.append({i for i, _ in index.search(q, 10)})  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"build": build, "memory": memory, "p50": statistics.median(times), "p99": times[98], "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    table = Table(title=f"vector search, {DIMS} dims, top 10, 100 queries (this machine)")
    for col in ("vectors", "index", "build s", "memory MB", "p50 ms", "p99 ms", "recall@10"):
        table.add_column(col, justify="right")
    for n in (int(s) for s in args.sizes.split(",")):
        ids, vectors, queries = data(n, np.random.default_rng(7))
        exact = measure(ExactVectorIndex(DIMS), ids, vectors, queries)
        gc.collect()
        hnsw = measure(HNSWVectorIndex(DIMS), ids, vectors, queries)
        recall = np.mean([len(a & b) / 10 for a, b in zip(exact["results"], hnsw["results"], strict=True)])  # type: ignore[arg-type]
        for name, r, rec in (("exact", exact, 1.0), ("hnsw", hnsw, recall)):
            table.add_row(
                f"{n:,}",
                name,
                f"{r['build']:.1f}",
                f"{r['memory']:.0f}",
                f"{r['p50']:.2f}",
                f"{r['p99']:.2f}",
                f"{rec:.3f}",
            )
        table.add_section()
        del vectors
        gc.collect()
    console.print(table)


if __name__ == "__main__":
    main()
