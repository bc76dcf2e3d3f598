"""``keel ingest``, ``keel search``, ``keel collections``."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.cli.common import console, fmt_ts, load_env
from keel.rag.collection import Collection, Mode, list_collections
from keel.rag.embedder import LocalMiniLM
from keel.rag.ingest import discover, ingest

CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest_cmd(
        collection: str = typer.Argument(..., help="collection name (created on first use)"),
        paths: list[Path] = typer.Argument(..., help="files or folders: .md .txt .html .pdf"),
        sync: bool = typer.Option(False, "--sync", help="remove documents whose files are gone"),
        chunk_tokens: int = typer.Option(200, min=16, max=256, help="token budget per chunk (new collections)"),
        overlap: int = typer.Option(0, min=0, help="tokens of overlap inside a section (new collections)"),
        config: str | None = CONFIG,
    ) -> None:
        """Index documents; re-running touches only what changed."""
        env = load_env(config)
        files, _ = discover(paths)
        with env.db() as conn:
            col = Collection.create(
                conn, collection, LocalMiniLM(), chunk_tokens=chunk_tokens, overlap=min(overlap, chunk_tokens - 1)
            )
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[current]}", style="dim"),
            )
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task(f"ingesting into {collection}", total=len(files), current="")
                report = ingest(
                    col, paths, sync=sync, progress=lambda doc_id: bar.update(task, advance=1, current=doc_id)
                )
        console.print(
            f"[green]{len(report.indexed)} indexed[/green] ({report.chunks} chunks) · "
            f"{len(report.unchanged)} unchanged · {len(report.removed)} removed · "
            f"[yellow]{len(report.skipped)} skipped[/yellow]"
        )
        for path, reason in report.skipped:
            console.print(f"  [yellow]skipped[/yellow] {path}: {reason}", highlight=False)
        for path, warning in report.warnings:
            console.print(f"  [dim]note[/dim] {path}: {warning}", highlight=False)

    @app.command("search")
    def search_cmd(
        collection: str = typer.Argument(...),
        query: str = typer.Argument(...),
        top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=1000),
        mode: Mode = typer.Option("hybrid", help="hybrid, keyword or vector"),
        min_score: float | None = typer.Option(None, help="drop hits below this cosine similarity"),
        json: bool = typer.Option(False, "--json", help="machine-readable results"),
        config: str | None = CONFIG,
    ) -> None:
        """Ranked chunks with their source, heading path, page and score."""
        env = load_env(config)
        with env.db() as conn:
            found = Collection(conn, collection, LocalMiniLM()).search(
                query, top_k=top_k, mode=mode, min_score=min_score
            )
        if json:
            print(orjson.dumps([f.as_dict() for f in found]).decode())
            return
        if not found:
            console.print("no relevant chunks found")
            return
        for rank, f in enumerate(found, 1):
            where = " › ".join(f.heading_path) or f.title
            page = f" · page {f.page}" if f.page else ""
            scores = f"score {f.score:.4f}"
            if f.keyword_score is not None:
                scores += f" · bm25 {f.keyword_score:.2f}"
            if f.vector_score is not None:
                scores += f" · cosine {f.vector_score:.3f}"
            console.print(f"[bold][{rank}][/bold] {f.doc_id}{page} — {where}  [dim]{scores}[/dim]", highlight=False)
            console.print(f"    {f.text[:300]}{'…' if len(f.text) > 300 else ''}", highlight=False, markup=False)

    @app.command("collections")
    def collections_cmd(config: str | None = CONFIG) -> None:
        """List collections."""
        with load_env(config).db() as conn:
            rows = list_collections(conn)
        if not rows:
            console.print("no collections yet: `keel ingest NAME ./folder`")
            return
        table = Table("collection", "documents", "chunks", "embedder", "chunk tokens", "created")
        for r in rows:
            table.add_row(
                r["name"],
                str(r["documents"]),
                str(r["chunks"]),
                r["embedder"],
                str(r["chunk_tokens"]),
                fmt_ts(r["created"]),
            )
        console.print(table)
