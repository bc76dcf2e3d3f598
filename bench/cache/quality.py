"""Semantic cache quality on 212 labelled query pairs (`bench/cache/pairs.yaml`, written for this
bench): paraphrases that should hit, and look-alikes that must miss (negations, changed numbers,
changed entities, opposite actions). Each pair goes through the real lookup — the cached question
stored in a fresh cache, the new one looked up in the same scope with MiniLM embeddings and the gate.

    python bench/cache/quality.py

Targets: false hits 0, paraphrase hits ≥ 60%. Printed side by side: cosine alone (what a plain
semantic cache does, e.g. GPTCache or LiteLLM's) and cosine + Keel's gate, at several thresholds.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from keel.cache.gate import compare
from keel.cache.store import AnswerCache
from keel.rag.embedder import LocalMiniLM
from keel.store import Store, db_path

console = Console(width=140)
PAIRS = Path(__file__).with_name("pairs.yaml")
DEFAULT = 0.85


def load() -> list[tuple[str, str, bool, str]]:
    out = []
    for group in yaml.safe_load(PAIRS.read_text()):
        out += [(q, group["base"], True, "paraphrase") for q in group["hit"]]
        out += [(m["q"], group["base"], False, m["kind"]) for m in group["miss"]]
    return out


def main() -> None:
    pairs = load()
    embedder = LocalMiniLM()
    queries = embedder.embed([p[0] for p in pairs])
    bases = embedder.embed([p[1] for p in pairs])
    cosines = (queries * bases).sum(axis=1)
    kinds = Counter(p[3] for p in pairs)
    console.print(f"{len(pairs)} pairs: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
    table = Table("threshold", "method", "paraphrase hits", "false hits", "false hits by kind", title="semantic cache")
    for threshold in (0.75, 0.80, DEFAULT, 0.90, 0.95):
        for method in ("cosine only", "cosine + gate"):
            hits = [
                c >= threshold and (method == "cosine only" or compare(q, b).same)
                for c, (q, b, _, _) in zip(cosines, pairs, strict=True)
            ]
            para = [h for h, p in zip(hits, pairs, strict=True) if p[2]]
            wrong = Counter(p[3] for h, p in zip(hits, pairs, strict=True) if h and not p[2])
            shown = ", ".join(f"{k} {n}" for k, n in sorted(wrong.items())) or "—"
            mark = " (default)" if threshold == DEFAULT and method == "cosine + gate" else ""
            table.add_row(f"{threshold:.2f}{mark}", method, f"{sum(para)}/{len(para)} ({sum(para) / len(para):.0%})",
                          str(sum(wrong.values())), shown)  # fmt: skip
    console.print(table)
    # the real lookup path (SQLite store, scope, gate), and its speed with 1,000 entries in the scope
    with tempfile.TemporaryDirectory() as tmp:
        cache = AnswerCache(Store.at(db_path(Path(tmp))).answers)
        for i, (_, base, _, _) in enumerate(pairs):
            cache.put(f"k{i}", scope=f"s{i}", feature="f", text=base, vector=bases[i], value={"answer": "a"},
                      trace_id=None, ttl_s=60)  # fmt: skip
        got = [cache.nearest(f"s{i}", q, queries[i], DEFAULT)[0] is not None for i, (q, *_rest) in enumerate(pairs)]
        para = sum(g for g, p in zip(got, pairs, strict=True) if p[2])
        false = sum(g for g, p in zip(got, pairs, strict=True) if not p[2])
        console.print(f"through AnswerCache.nearest at {DEFAULT}: paraphrase hits {para}, false hits {false}")
        vectors = embedder.embed([f"question number {i} about topic {i % 37}" for i in range(1000)])
        for i in range(1000):
            cache.put(f"big{i}", scope="big", feature="f", text=f"question number {i}", vector=vectors[i],
                      value={"answer": "a"}, trace_id=None, ttl_s=60)  # fmt: skip
        times = []
        for i in range(200):
            t0 = time.perf_counter()
            cache.nearest("big", "question number 5", vectors[i % 1000], DEFAULT)
            times.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        for i in range(200):
            embedder.embed([pairs[i % len(pairs)][0]])
        embed_ms = (time.perf_counter() - t0) * 1000 / 200
    console.print(
        f"lookup in a scope of 1,000 entries: p50 {statistics.median(times):.2f} ms "
        f"(+ embedding the query: {embed_ms:.1f} ms)"
    )


if __name__ == "__main__":
    main()
