"""``keel demo``: the main job on the embedded default, end to end over real HTTP.

Ingests the shipped demo handbook (a fictional product's 33-page documentation set), starts the
gateway on loopback with API keys on, creates a key, and runs the ``support_answer`` feature through
the Python SDK over SSE: the local model streams an answer grounded in numbered sources, and the demo
prints the citations, the prompt version, the model, latency, cost and the trace Keel recorded.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import typer

from keel.cli.common import Env, console, fmt_cost, load_env
from keel.cli.rag import ingest_with_progress, print_report
from keel.errors import UserError
from keel.sdk import Client, RunResult
from keel.store.keys import DEFAULT_TENANT

PROJECT = Path(__file__).resolve().parent.parent / "demo_project"
QUESTION = "How do I rotate my API key without downtime?"
FEATURE = "support_answer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        question: str = typer.Option(QUESTION, help="what to ask the Harbor support feature"),
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
    ) -> None:
        """Ingest the demo handbook, serve it, and answer a support question with citations."""
        import uvicorn

        from keel.server import build_app

        env = load_env(config)
        env = Env(env.settings.model_copy(update={"project_root": PROJECT}), env.home)
        console.rule("1 · ingest the demo handbook (a fictional product's docs, shipped with Keel)")
        print_report(ingest_with_progress(env, "handbook", [PROJECT / "handbook"]))
        app_ = build_app(env.settings, env.home, auth=True, host="127.0.0.1")
        alias = env.settings.default_model or "local"
        route = app_.service.gateway.route(alias)
        with console.status(f"preparing {route.info.model} (first run assembles the model and checks its sha256)…"):
            for dep in route.settings.deployments:
                load = getattr(app_.service.gateway.adapters[dep], "load", None)
                if load is not None:
                    load()
        with env.store() as store:  # the demo's data is the default tenant's, so its key is too
            key, _ = store.keys.create(DEFAULT_TENANT, "keel demo")
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app_.asgi, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            time.sleep(0.02)
        if not server.started:
            raise UserError(f"the gateway could not start on 127.0.0.1:{port}")
        base = f"http://127.0.0.1:{port}/v1"
        console.rule(f"2 · run the '{FEATURE}' feature on {base} (API key auth, tracing on)")
        console.print(f"[bold]POST {base}/features/{FEATURE}/run[/bold]  stream=true  (keel.Client.stream)")
        console.print(f"[bold cyan]Q:[/bold cyan] {question}")
        try:
            result = _ask(base, key, question)
        finally:
            server.should_exit = True
            thread.join(15)
        _show(env, result)


def _ask(base: str, key: str, question: str) -> RunResult:
    """Stream the answer to the terminal through the SDK; return the final result."""
    console.print("[bold green]A:[/bold green] ", end="")
    result: RunResult | None = None
    with Client(base_url=base, api_key=key, timeout=600) as client:
        for event in client.stream(FEATURE, question=question, user="demo-user"):
            if event.type == "delta":
                console.print(event.text, end="", highlight=False, markup=False, soft_wrap=True)
            elif event.type == "done":
                result = event.result
    console.print()
    if result is None:
        raise UserError("the stream ended without a result; see `keel traces list`")
    if result.found_nothing:
        console.print(f"[yellow]{result.answer}[/yellow]")
    return result


def _show(env: Env, result: RunResult) -> None:
    valid = {c["number"]: c["valid"] for c in result.citations}
    console.rule("sources (numbered as the model saw them)")
    for number, source in enumerate(result.sources, 1):
        mark = "cited ✓" if valid.get(number) else ""
        where = " › ".join(source.get("heading_path") or []) or source.get("title", "")
        console.print(f"  [{number}] {source['doc_id']} — {where}  [green]{mark}[/green]", highlight=False)
    invalid = [n for n, ok in valid.items() if not ok]
    if invalid:
        console.print(f"  [yellow]cites {invalid}, which were not given[/yellow]")
    elif not valid and not result.found_nothing:
        console.print("  [yellow]the answer cites no source (small local models often forget to)[/yellow]")
    with env.store() as store:
        rec = store.traces.get(result.trace_id, tenant=None)
        inside = store.traces.children(result.trace_id, tenant=None)
    ttft = max((c.ttft_ms for c in inside if c.ttft_ms), default=None)
    calls = (len(inside), sum(c.input_tokens for c in inside), sum(c.output_tokens for c in inside), ttft)
    if rec is None:
        raise UserError(f"trace {result.trace_id} was not recorded")
    console.rule("what Keel recorded")
    console.print(f"trace id      {rec.id}  (feature run; {calls[0]} model call(s) inside)")
    console.print(f"feature       {rec.feature} · prompt {rec.prompt} v{rec.prompt_version} (label production)")
    console.print(f"served by     {rec.alias} → {rec.deployment} ({rec.provider}: {rec.model})")
    console.print(f"tokens        {rec.input_tokens} in / {rec.output_tokens} out")
    first = f", first token {calls[3]:.0f} ms" if calls[3] else ""
    console.print(f"latency       {rec.latency_ms:.0f} ms{first}")
    console.print(f"cost          {fmt_cost(rec.cost_usd)} ({rec.cost_source})")
    console.print(
        f'\nNext: [bold]keel traces show {rec.id[:12]}[/bold] · [bold]keel search handbook "refunds"[/bold] · '
        f"[bold]keel run {FEATURE} --root {PROJECT} --input question=…[/bold]",
        highlight=False,
    )
