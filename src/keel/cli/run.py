"""``keel run``: run a feature end to end and show what served it."""

from __future__ import annotations

import asyncio
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import typer

from keel.cli.common import Env, console, fmt_cost, load_env
from keel.errors import UserError
from keel.features.pipeline import FeaturePipeline
from keel.features.prompts import DEFAULT_LABEL, PromptRegistry
from keel.gateway.runtime import build_service, close_service
from keel.rag.backends import Backend
from keel.rag.embedder import make_embedder


def parse_inputs(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--input takes NAME=VALUE, not '{pair}'")
        try:
            out[key.strip()] = (
                orjson.loads(raw)
                if raw[:1] in '[{"' or raw in ("true", "false", "null") or raw.lstrip("-").replace(".", "", 1).isdigit()
                else raw
            )
        except orjson.JSONDecodeError:
            out[key.strip()] = raw
    return out


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        feature: str = typer.Argument(..., help="a feature in ./features/<name>.yaml"),
        inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=VALUE (repeatable; JSON values allowed)"),
        user: str | None = typer.Option(None, help="the end user, for traces"),
        label: str = typer.Option(DEFAULT_LABEL, help="the prompt label to serve"),
        root: Path = typer.Option(Path("."), help="the project folder holding features/ and prompts/"),
        json: bool = typer.Option(False, "--json", help="print the result as JSON"),
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
    ) -> None:
        """Run a feature: prompt version, retrieval, model, validation — and what it cost."""
        asyncio.run(_run(load_env(config), feature, parse_inputs(inputs), user, label, root, json))


async def _run(
    env: Env, feature: str, inputs: dict[str, Any], user: str | None, label: str, root: Path, as_json: bool
) -> None:
    service = build_service(env.settings, env.home)
    try:
        with closing(Backend(env.settings, env.home)) as backend, env.db() as conn:
            pipeline = FeaturePipeline(
                service,
                root,
                PromptRegistry(conn, root / "prompts"),
                backend=backend,
                embedder=make_embedder(env.settings),
            )
            result = await pipeline.run(feature, inputs, user=user, tenant="cli", label=label)
        if as_json:
            data = {
                k: getattr(result, k)
                for k in (
                    "feature",
                    "answer",
                    "value",
                    "prompt_version",
                    "prompt_fallback",
                    "model",
                    "trace_id",
                    "cost_usd",
                    "latency_ms",
                    "found_nothing",
                    "attempts",
                )
            }
            data["sources"] = [s.as_dict() for s in result.sources]
            data["citations"] = [{"number": c.number, "valid": c.valid} for c in result.citations]
            print(orjson.dumps(data).decode())
            return
        console.print(result.answer, highlight=False, markup=False)
        for number, s in enumerate(result.sources, 1):
            console.print(
                f"  [dim][{number}] {s.doc_id} — {' › '.join(s.heading_path) or s.title}[/dim]", highlight=False
            )
        invalid = [c.number for c in result.citations if not c.valid]
        if invalid:
            console.print(f"[yellow]cites sources that were not given: {invalid}[/yellow]")
        if result.prompt_fallback:
            console.print(f"[yellow]{result.prompt_fallback}[/yellow]")
        console.print(
            f"[dim]{feature} · prompt v{result.prompt_version} · {result.model} · "
            f"{result.latency_ms:.0f} ms · cost {fmt_cost(result.cost_usd)} · trace {result.trace_id}[/dim]",
            highlight=False,
        )
    finally:
        await close_service(service)
