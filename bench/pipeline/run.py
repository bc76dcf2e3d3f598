"""The feature pipeline's own cost, and structured output on the local model.

    python bench/pipeline/run.py                      # both parts (~3 min)
    python bench/pipeline/run.py --skip-structured    # overhead only (~1 min)
    python bench/pipeline/run.py --skip-overhead      # structured output only (~4 min)

**Overhead**: everything a feature run does except the model and the embedder — load the spec,
resolve the prompt label and render the template, hybrid retrieval over 10k chunks (BM25 + exact
vectors + fusion + feedback + dedup), context fitting, the gateway call with its wrappers, schema
validation, citation check, and the trace rows (the run's and its model call's). The model is the
scripted provider (no delay) and the embedder returns precomputed vectors; both are timed and
subtracted. Variants show where the time goes.

**Structured output**: 50 extraction cases (support tickets → a JSON object with a name, email,
order id, amount, issue type and urgency) on the local model with grammar-constrained decoding, at
most 2 re-asks — and the same loop with the grammar switched off (JSON asked for in the prompt only),
to show what the re-asks do. Validity, attempts per success, per-field accuracy and latency.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "retrieval"))
from speed import synthesise

from keel.config import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.features.pipeline import FeaturePipeline
from keel.gateway.runtime import build_service, close_service
from keel.rag.backends import Collections
from keel.store import Store, connect, db_path

console = Console(width=140)
SCRIPTED = "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"
PROMPT = """---
description: Answer from the docs as JSON
params: {max_tokens: 300}
inputs:
  question: {type: str}
  tier: {type: str, required: false, default: standard}
---
[system]
You are Acme support for {{ tier }} customers. Reply with JSON.
[user]
{{ question }}
"""
SCHEMA = """{"type": "object", "properties": {"answer": {"type": "string"}, "sources": {"type": "array",
 "items": {"type": "integer"}}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
 "required": ["answer", "sources", "confidence"], "additionalProperties": false}"""
REPLY = '{"answer": "Rotate the key in settings, then deploy it [1].", "sources": [1], "confidence": 0.8}'


class PrecomputedEmbedder:
    """Returns a stored unit vector per text (random, seeded), and times itself."""

    name = "all-minilm-l6-v2"
    dims = 384

    def __init__(self) -> None:
        self.seconds = 0.0
        self._cache: dict[str, np.ndarray] = {}
        self._rng = np.random.default_rng(5)

    def embed(self, texts: list[str]) -> np.ndarray:
        t0 = time.perf_counter()
        rows = []
        for text in texts:
            if text not in self._cache:
                v = self._rng.normal(size=self.dims).astype(np.float32)
                self._cache[text] = v / np.linalg.norm(v)
            rows.append(self._cache[text])
        self.seconds += time.perf_counter() - t0
        return np.stack(rows)

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def _project(root: Path) -> None:
    for folder in ("features", "prompts", "schemas"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "prompts" / "support.md").write_text(PROMPT)
    (root / "schemas" / "answer.json").write_text(SCHEMA)
    features = {
        "full": "retrieval: {collection: big, top_k: 6, min_score: -1}\noutput: {schema: schemas/answer.json}\n",
        "no_feedback": "retrieval: {collection: big, top_k: 6, min_score: -1, feedback: false}\n"
        "output: {schema: schemas/answer.json}\n",
        "keyword_only": "retrieval: {collection: big, top_k: 6, min_score: -1, mode: keyword, feedback: false}\n"
        "output: {schema: schemas/answer.json}\n",
        "no_retrieval": "output: {schema: schemas/answer.json}\n",
        "plain": "",
    }
    for name, extra in features.items():
        (root / "features" / f"{name}.yaml").write_text(f"prompt: support\nmodel: m\n{extra}")


async def _overhead(runs: int, chunks: int) -> list[tuple[str, list[float], list[float]]]:
    home = Path(tempfile.mkdtemp(prefix="keel-bench-pipeline-"))
    root = home / "project"
    _project(root)
    with console.status(f"synthesising {chunks:,} chunks…"):
        synthesise(db_path(home), chunks, 384)
    settings = settings_from_yaml(parse_yaml(SCRIPTED, "bench.yaml"))
    service = build_service(settings, home)
    provider: Any = service.gateway.adapters["d"]
    embedder = PrecomputedEmbedder()
    provider_seconds = 0.0
    respond = provider._next

    def timed_next(req: Any) -> Any:
        nonlocal provider_seconds
        t0 = time.perf_counter()
        out = respond(req)
        provider_seconds += time.perf_counter() - t0
        return out

    provider._next = timed_next
    provider.responder = lambda req: REPLY
    collections = Collections(settings, home, embedder)
    pipeline = FeaturePipeline(service, root, Store.at(db_path(home)), collections=collections)
    questions = [f"How do I rotate api key {i} for team {i % 7}?" for i in range(runs)]
    results = []
    try:
        for feature in ("full", "no_feedback", "keyword_only", "no_retrieval", "plain"):
            for q in questions[:20]:  # warm: open the collection, cache prompts
                await pipeline.run(feature, {"question": q}, user="bench")
            totals, overheads = [], []
            for q in questions:
                embedder.seconds, provider_seconds = 0.0, 0.0
                t0 = time.perf_counter()
                await pipeline.run(feature, {"question": q}, user="bench")
                total = (time.perf_counter() - t0) * 1000
                totals.append(total)
                overheads.append(total - (embedder.seconds + provider_seconds) * 1000)
            results.append((feature, totals, overheads))
        assert service.writer is not None
        service.writer.flush()
        rows = connect(db_path(home)).execute("SELECT count(*) FROM traces WHERE operation = 'feature'").fetchone()[0]
        console.print(f"[dim]{rows} feature trace rows written (each run: its own row + its model call's)[/dim]")
    finally:
        collections.close()
        await close_service(service)
    return results


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def show_overhead(results: list[tuple[str, list[float], list[float]]], chunks: int) -> None:
    table = Table(title=f"feature pipeline overhead per run, ms (model + embedder excluded; {chunks:,} chunks)")
    for col in ("feature", "what it does", "runs", "p50", "p90", "p99", "target"):
        table.add_column(col, justify="right" if col not in ("feature", "what it does") else "left")
    what = {
        "full": "hybrid retrieval + feedback + prompt + schema validation + traces",
        "no_feedback": "hybrid retrieval (feedback: false) + prompt + schema + traces",
        "keyword_only": "BM25 retrieval (mode: keyword) + prompt + schema + traces",
        "no_retrieval": "prompt + schema validation + traces",
        "plain": "prompt + traces",
    }
    for feature, _totals, overheads in results:
        target = "≤ 2.00" if feature == "full" else ""
        table.add_row(
            feature,
            what[feature],
            str(len(overheads)),
            f"{_pct(overheads, 50):.2f}",
            f"{_pct(overheads, 90):.2f}",
            f"{_pct(overheads, 99):.2f}",
            target,
        )
    console.print(table)


# -- structured output on the local model --------------------------------------------------------

FIRST = "Ada Grace Alan Linus Margaret Edsger Barbara Donald Frances Ken Radia Tim Hedy Claude John Sophie".split()
LAST = (
    "Lovelace Hopper Turing Torvalds Hamilton Dijkstra Liskov Knuth Allen Thompson Perlman Berners-Lee Lamarr Shannon"
).split()
ISSUES = {
    "refund": ["I want my money back for order {order}.", "Please refund order {order}, it arrived broken."],
    "shipping": ["Order {order} has not arrived yet.", "Where is my parcel? Order {order} is late."],
    "account": ["I cannot log in to my account since yesterday.", "Please change the email on my account."],
    "bug": ["The export button crashes the app when I click it.", "Invoices page shows an error 500."],
}
EXTRACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "email": {"type": "string"},
        "order_id": {"type": ["string", "null"]},
        "amount_usd": {"type": ["number", "null"]},
        "issue": {"type": "string", "enum": ["refund", "shipping", "account", "bug", "other"]},
        "urgent": {"type": "boolean"},
    },
    "required": ["name", "email", "order_id", "amount_usd", "issue", "urgent"],
    "additionalProperties": False,
}


def cases(n: int = 50) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(42)
    out = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first.lower()}.{last.lower()}@example.com"
        issue = list(ISSUES)[i % len(ISSUES)]
        order = f"A-{rng.randint(10000, 99999)}" if issue in ("refund", "shipping") else None
        amount = round(rng.uniform(5, 500), 2) if issue == "refund" else None
        urgent = i % 3 == 0
        body = rng.choice(ISSUES[issue]).format(order=order)
        if amount is not None:
            body += f" I paid ${amount:.2f}."
        if urgent:
            body += " This is urgent, please help today!"
        ticket = f"From: {first} {last} <{email}>\nSubject: Help\n\n{body}\n\nThanks, {first}"
        out.append((ticket, {"name": f"{first} {last}", "email": email, "order_id": order, "amount_usd": amount,
                             "issue": issue, "urgent": urgent}))  # fmt: skip
    return out


async def _structured(n: int, *, grammar: bool) -> dict[str, Any]:
    from keel.config import load_settings
    from keel.features.structured import StructuredOutputError, complete_structured

    home = Path(tempfile.mkdtemp(prefix="keel-bench-structured-"))
    service = build_service(load_settings(None), home)
    model = service.gateway.settings.default_model or "local"
    route = service.gateway.route(model)
    if not grammar:  # the same loop, but the model only *asked* for JSON: re-asks must do the work
        for dep in route.settings.deployments:
            adapter: Any = service.gateway.adapters[dep]
            complete = adapter.complete

            async def prompt_only(req: Any, complete: Any = complete) -> Any:
                req.params = {k: v for k, v in req.params.items() if k != "response_format"}
                return await complete(req)

            adapter.complete = prompt_only
    system = (
        "Extract the ticket's fields as JSON: name, email, order_id (null if none), amount_usd (null if none), "
        "issue (refund, shipping, account, bug or other), urgent (true only if the customer says it is urgent). "
        "Reply with only the JSON object."
    )
    successes, attempts, latencies, fields_total = 0, [], [], 0
    right: dict[str, int] = dict.fromkeys(EXTRACT_SCHEMA["properties"], 0)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            how = "grammar" if grammar else "prompt only"
            task = bar.add_task(f"extracting with {route.info.model} ({how})", total=n)
            for ticket, expected in cases(n):
                t0 = time.perf_counter()
                try:
                    result = await complete_structured(
                        service,
                        model=model,
                        messages=[{"role": "system", "content": system}, {"role": "user", "content": ticket}],
                        schema=EXTRACT_SCHEMA,
                        retries=2,
                        params={"max_tokens": 200, "temperature": 0},
                    )
                    successes += 1
                    attempts.append(result.attempts)
                    for key, value in expected.items():
                        right[key] += result.value.get(key) == value
                except StructuredOutputError:
                    pass
                fields_total += 1
                latencies.append((time.perf_counter() - t0) * 1000)
                bar.update(task, advance=1)
    finally:
        await close_service(service)
    return {
        "model": route.info.model,
        "how": "grammar-constrained" if grammar else "JSON asked in the prompt, no grammar",
        "cases": n,
        "valid": successes,
        "attempts_per_success": statistics.mean(attempts) if attempts else 0.0,
        "first_try": sum(a == 1 for a in attempts),
        "field_accuracy": sum(right.values()) / (fields_total * len(right)) if fields_total else 0.0,
        "per_field": {k: v / n for k, v in right.items()},
        "p50_ms": statistics.median(latencies),
    }


def show_structured(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"structured output on the local model ({rows[0]['model']}, ≤ 2 re-asks, 50 tickets)")
    fields = list(rows[0]["per_field"])
    for col in ("decoding", "valid", "first try", "attempts / success", "all fields", *fields, "p50 ms"):
        table.add_column(col, justify="left" if col == "decoding" else "right")
    for s in rows:
        table.add_row(
            s["how"],
            f"{s['valid']}/{s['cases']}",
            str(s["first_try"]),
            f"{s['attempts_per_success']:.2f}",
            f"{s['field_accuracy']:.1%}",
            *(f"{s['per_field'][f]:.0%}" for f in fields),
            f"{s['p50_ms']:.0f}",
        )
    console.print(table)
    console.print(
        "[dim]field columns: share of the 50 cases with that field exactly right (invalid replies count as wrong)[/dim]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--skip-structured", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    if not args.skip_overhead:
        show_overhead(asyncio.run(_overhead(args.runs, args.chunks)), args.chunks)
    if not args.skip_structured:
        show_structured([asyncio.run(_structured(args.cases, grammar=g)) for g in (True, False)])


if __name__ == "__main__":
    main()
