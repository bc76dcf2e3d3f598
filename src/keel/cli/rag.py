"""``keel ingest``, ``keel search``, ``keel collections``."""

from __future__ import annotations

import asyncio
from contextlib import closing
from pathlib import Path

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.cli.common import DEFAULT_TENANT, TENANT, Env, console, fmt_ts, load_env
from keel.gateway.runtime import build_service, close_service
from keel.rag.answer import Answer, answer_stream
from keel.rag.backends import Backend, CollectionLike
from keel.rag.collection import Found, Mode
from keel.rag.embedder import make_embedder
from keel.rag.grouping import GroupBy, documents
from keel.rag.ingest import IngestReport, discover, ingest
from keel.rag.retrieval import DEFAULT_FLOOR, Query, retrieve
from keel.rag.search import Filters
from keel.types import CallContext

CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")


def ingest_with_progress(
    env: Env,
    collection: str,
    paths: list[Path],
    *,
    sync: bool = False,
    chunk_tokens: int = 128,
    overlap: int = 0,
    rerank: str | None = None,
    tenant: str = DEFAULT_TENANT,
) -> IngestReport:
    """Ingest with a progress bar (one step per file); unchanged files are skipped quickly."""
    files, _ = discover(paths)
    with closing(Backend(env.settings, env.home)) as backend, closing(make_embedder(env.settings, env.home)) as emb:
        col = backend.open(
            tenant,
            collection,
            emb,
            create=True,
            chunk_tokens=chunk_tokens,
            overlap=min(overlap, chunk_tokens - 1),
        )
        if rerank is not None:
            col.set_rerank(rerank)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"ingesting into {collection}", total=len(files), current="")
            return ingest(col, paths, sync=sync, progress=lambda doc_id: bar.update(task, advance=1, current=doc_id))


def print_report(report: IngestReport) -> None:
    console.print(
        f"[green]{len(report.indexed)} indexed[/green] ({report.chunks} chunks) · "
        f"{len(report.unchanged)} unchanged · {len(report.removed)} removed · "
        f"[yellow]{len(report.skipped)} skipped[/yellow]"
    )
    if report.reindexed:
        console.print(
            f"  [dim]{len(report.reindexed)} unchanged document(s) re-indexed: their chunks now carry the "
            "document's title; only chunks whose embedded text changed were embedded again[/dim]"
        )
    for path, reason in report.skipped:
        console.print(f"  [yellow]skipped[/yellow] {path}: {reason}", highlight=False)
    for path, warning in report.warnings:
        console.print(f"  [dim]note[/dim] {path}: {warning}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest_cmd(
        collection: str = typer.Argument(..., help="collection name (created on first use)"),
        paths: list[Path] = typer.Argument(..., help="files or folders: .md .txt .html .pdf"),
        sync: bool = typer.Option(False, "--sync", help="remove documents whose files are gone"),
        chunk_tokens: int = typer.Option(
            128, min=16, max=256, help="token budget per chunk, new collections (MiniLM was trained on ≤128)"
        ),
        overlap: int = typer.Option(0, min=0, help="tokens of overlap inside a section (new collections)"),
        rerank: str | None = typer.Option(
            None, help="set the collection's reranker: none, llm[:model], cross-encoder:MODEL.onnx:TOKENIZER.json"
        ),
        tenant: str = TENANT,
        config: str | None = CONFIG,
    ) -> None:
        """Index documents; re-running touches only what changed."""
        env = load_env(config)
        report = ingest_with_progress(
            env, collection, paths, sync=sync, chunk_tokens=chunk_tokens, overlap=overlap, rerank=rerank, tenant=tenant
        )
        print_report(report)

    @app.command("search")
    def search_cmd(
        collection: str = typer.Argument(...),
        query: str = typer.Argument(...),
        top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=1000),
        mode: Mode = typer.Option("hybrid", help="hybrid, keyword or vector"),
        min_score: float | None = typer.Option(None, help="drop hits below this cosine similarity"),
        json: bool = typer.Option(False, "--json", help="machine-readable results"),
        rerank: str | None = typer.Option(None, help="override the collection's reranker for this search"),
        doc_prefix: str | None = typer.Option(None, help="only documents whose id starts with this"),
        kind: list[str] = typer.Option([], help="only these document kinds: md, txt, html, pdf (repeatable)"),
        group_by: GroupBy = typer.Option("chunk", "--group-by", help="chunk, or document: top-k distinct documents"),
        per_document: int = typer.Option(2, "--per-document", min=1, max=20, help="chunks shown per document"),
        tenant: str = TENANT,
        config: str | None = CONFIG,
    ) -> None:
        """Ranked chunks with their source, heading path, page and score (or documents, with their best chunks)."""
        env = load_env(config)
        with closing(Backend(env.settings, env.home)) as backend, closing(make_embedder(env.settings, env.home)) as emb:
            col = backend.open(tenant, collection, emb)
            filters = Filters(None, doc_prefix, frozenset(kind)) if doc_prefix or kind else None
            asked = Query(
                query, top_k=top_k, mode=mode, min_score=min_score, filters=filters, rerank=rerank,
                group_by=group_by, per_document=per_document,
            )  # fmt: skip
            found = asyncio.run(_search(env, col, asked, tenant))
        grouped = group_by == "document"
        if json:
            print(orjson.dumps(documents(found) if grouped else [f.as_dict() for f in found]).decode())
            return
        if not found:
            console.print("no relevant chunks found")
            return
        rank = 0
        for i, f in enumerate(found):
            fresh = not grouped or i == 0 or found[i - 1].doc_id != f.doc_id
            rank += fresh
            print_hit(f, rank, fresh, grouped)

    @app.command("collections")
    def collections_cmd(
        tenant: str | None = typer.Option(None, "--tenant", help="only this tenant's (default: every tenant's)"),
        config: str | None = CONFIG,
    ) -> None:
        """List collections."""
        env = load_env(config)
        with closing(Backend(env.settings, env.home)) as backend:
            rows = backend.list(tenant)
        if not rows:
            console.print("no collections yet: `keel ingest NAME ./folder`")
            return
        table = Table("collection", "tenant", "documents", "chunks", "embedder", "chunk tokens", "created")
        for r in rows:
            table.add_row(
                r["name"],
                r["tenant"],
                str(r["documents"]),
                str(r["chunks"]),
                r["embedder"],
                str(r["chunk_tokens"]),
                fmt_ts(r["created"]),
            )
        console.print(table)


def print_hit(f: Found, rank: int, fresh: bool, grouped: bool) -> None:
    """One chunk of ``keel search``: under its document's line when grouped."""
    where = " › ".join(f.heading_path) or f.title
    page = f" · page {f.page}" if f.page else ""
    scores = f"score {f.score:.4f}"
    if f.keyword_score is not None:
        scores += f" · bm25 {f.keyword_score:.2f}"
    if f.vector_score is not None:
        scores += f" · cosine {f.vector_score:.3f}"
    if grouped and fresh:
        doc_score = f"score {f.doc_score or 0:.4f}"
        console.print(f"[bold][{rank}][/bold] {f.doc_id} — {f.title}  [dim]{doc_score}[/dim]", highlight=False)
    if grouped:
        console.print(f"    {where}{page} · chars {f.start}–{f.end}  [dim]{scores}[/dim]", highlight=False)
    else:
        console.print(f"[bold][{rank}][/bold] {f.doc_id}{page} — {where}  [dim]{scores}[/dim]", highlight=False)
    console.print(f"    {f.text[:300]}{'…' if len(f.text) > 300 else ''}", highlight=False, markup=False)


async def _search(env: Env, col: CollectionLike, asked: Query, tenant: str) -> list[Found]:
    spec = asked.rerank if asked.rerank is not None else col.rerank
    service = build_service(env.settings, env.home) if spec.startswith("llm") else None  # only the LLM needs it
    try:
        default_model = env.settings.default_model or "local"
        return await retrieve(col, asked, service=service, default_model=default_model, tenant=tenant)
    finally:
        if service is not None:
            await close_service(service)


def register_ask(app: typer.Typer) -> None:
    @app.command("ask")
    def ask_cmd(
        collection: str = typer.Argument(...),
        question: str = typer.Argument(...),
        model: str | None = typer.Option(None, "--model", "-m", help="model alias (default: the default model)"),
        top_k: int = typer.Option(6, "--top-k", "-k", min=1, max=50),
        min_score: float = typer.Option(DEFAULT_FLOOR, help="sources below this cosine similarity are not used"),
        max_tokens: int = typer.Option(400, min=1),
        json: bool = typer.Option(False, "--json", help="print the answer, sources and citations as JSON"),
        cite: bool = typer.Option(True, help="cite uncited sentences from the source that supports each"),
        tenant: str = TENANT,
        config: str | None = CONFIG,
    ) -> None:
        """Answer from a collection, citing sources as [1], [2] — or say it does not know."""
        asked = (question, model, top_k, min_score, max_tokens, cite)
        asyncio.run(_ask(load_env(config), tenant, collection, asked, json))


async def _ask(
    env: Env, tenant: str, name: str, asked: tuple[str, str | None, int, float, int, bool], as_json: bool
) -> None:
    question, model, top_k, min_score, max_tokens, cite = asked
    service = build_service(env.settings, env.home)
    try:
        with closing(Backend(env.settings, env.home)) as backend, closing(make_embedder(env.settings, env.home)) as emb:
            col = backend.open(tenant, name, emb)
            result = Answer()
            alias = model or env.settings.default_model or "local"
            stream = answer_stream(
                service,
                col,
                question,
                model=alias,
                top_k=top_k,
                min_score=min_score,
                max_tokens=max_tokens,
                cite=cite,
                ctx=CallContext(tenant=tenant, feature="ask"),
                result=result,
            )
            async for text in stream:
                if not as_json:
                    console.print(text, end="", highlight=False, markup=False, soft_wrap=True)
        if as_json:
            print(orjson.dumps(result.as_dict()).decode())
            return
        console.print()
        for number, s in enumerate(result.sources, 1):
            where = " › ".join(s.heading_path) or s.title
            page = f", page {s.page}" if s.page else ""
            console.print(
                f"  [dim][{number}] {s.doc_id} — {where}{page} (chars {s.start}–{s.end})[/dim]", highlight=False
            )
        if result.attributed:
            console.print(
                f"  [dim]Keel cited {result.attributed} sentence(s) the model left uncited, each from the source "
                "that supports it (--no-cite: the model's own markers only)[/dim]"
            )
        if result.invalid_citations:
            console.print(f"[yellow]cites sources that were not given: {result.invalid_citations}[/yellow]")
        if result.trace_id:
            console.print(f"[dim]trace {result.trace_id}[/dim]")
    finally:
        await close_service(service)
