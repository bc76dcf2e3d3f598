"""``keel run``: run a feature end to end and show what served it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import typer

from keel.cli.common import DEFAULT_TENANT, TENANT, Env, console, fmt_cost, load_env
from keel.errors import UserError
from keel.features.pipeline import Delta, Done, FeatureResult, event_dict, open_pipeline
from keel.features.prompts import DEFAULT_LABEL
from keel.features.structured import Partial


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
        user: str | None = typer.Option(None, help="the end user, for traces (and experiment arms)"),
        label: str = typer.Option(DEFAULT_LABEL, help="the prompt label to serve"),
        stream: bool = typer.Option(False, "--stream", help="print the answer as it is generated"),
        root: Path = typer.Option(Path("."), help="the project folder holding features/ and prompts/"),
        json: bool = typer.Option(False, "--json", help="print the result as JSON (one line per event with --stream)"),
        queue: bool = typer.Option(
            False, "--async", help="queue it as a durable job for keel serve or keel worker, and print its id"
        ),
        wait: bool = typer.Option(False, "--wait", help="with --async: follow the job's progress until it ends"),
        tenant: str = TENANT,
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
    ) -> None:
        """Run a feature: prompt version, retrieval, model, validation — and what it cost."""
        if queue:
            _queue(load_env(config), feature, parse_inputs(inputs), user, label, root, wait, tenant)
            return
        asyncio.run(_run(load_env(config), feature, parse_inputs(inputs), user, label, root, json, stream, tenant))


def _queue(
    env: Env, feature: str, inputs: dict[str, Any], user: str | None, label: str, root: Path, wait: bool, tenant: str
) -> None:
    from keel.cli.jobs import submit, tail
    from keel.features.spec import load_feature

    load_feature(root, feature).check_tenant(tenant)  # an unknown feature fails now, not in the worker
    with env.store() as store:
        job = submit(store, "feature", {"inputs": inputs, "user": user, "label": label}, tenant, feature=feature)
        if wait:
            job = tail(store, job.id, tenant)
            if job.status == "succeeded" and isinstance(job.result, dict):
                console.print(str(job.result.get("answer", "")), highlight=False, markup=False)
            raise typer.Exit(0 if job.status == "succeeded" else 1)


async def _run(
    env: Env,
    feature: str,
    inputs: dict[str, Any],
    user: str | None,
    label: str,
    root: Path,
    as_json: bool,
    stream: bool = False,
    tenant: str = DEFAULT_TENANT,
) -> None:
    async with open_pipeline(env.settings, env.home, root) as pipeline:
        streamed = False
        async for event in pipeline.events(feature, inputs, user=user, tenant=tenant, label=label, stream=stream):
            if as_json:
                if stream or isinstance(event, Done):
                    print(orjson.dumps(event_dict(event)).decode(), flush=True)
            elif isinstance(event, Delta):
                streamed = True
                console.print(event.text, end="", highlight=False, markup=False, soft_wrap=True)
            elif isinstance(event, Partial) and sys.stdout.isatty():
                console.print(f"[dim]… {orjson.dumps(event.value).decode()[-100:]}[/dim]", highlight=False)
            elif isinstance(event, Done):
                if streamed:
                    console.print()
                show(event.result, answer=not streamed)


def show(result: FeatureResult, *, answer: bool = True) -> None:
    """The answer, its sources and checked citations, and what served it."""
    if answer:
        console.print(result.answer, highlight=False, markup=False)
    for number, s in enumerate(result.sources, 1):
        console.print(f"  [dim][{number}] {s.doc_id} — {' › '.join(s.heading_path) or s.title}[/dim]", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]{note}[/yellow]", highlight=False)
    arm = f" · experiment {result.experiment} arm {result.arm}" if result.arm else ""
    console.print(
        f"[dim]{result.feature} · prompt v{result.prompt_version} · {result.model}{arm} · "
        f"{result.latency_ms:.0f} ms · cost {fmt_cost(result.cost_usd)} · trace {result.trace_id}[/dim]",
        highlight=False,
    )
