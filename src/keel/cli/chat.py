"""``keel chat``: stream an answer in the terminal through the gateway (traced and costed)."""

from __future__ import annotations

import asyncio
import time

import typer

from keel.cli.common import TENANT, Env, console, fmt_cost, load_env
from keel.errors import UserError
from keel.gateway.runtime import build_service, close_service
from keel.types import CallContext, ChatRequest


def register(app: typer.Typer) -> None:
    @app.command()
    def chat(
        prompt: str = typer.Argument(..., help="what to ask"),
        model: str | None = typer.Option(None, "--model", "-m", help="a model alias (see `keel models`)"),
        system: str | None = typer.Option(None, help="a system prompt"),
        max_tokens: int = typer.Option(512, help="upper bound on the answer's length", min=1),
        temperature: float | None = typer.Option(None, min=0.0, max=2.0),
        tenant: str = TENANT,
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
    ) -> None:
        """Ask a model and stream its answer."""
        if not prompt.strip():
            raise UserError("the prompt is empty")
        env = load_env(config)
        alias = model or env.settings.default_model or next(iter(env.settings.models))
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        params = {"temperature": temperature} if temperature is not None else {}
        req = ChatRequest(
            model=alias,
            messages=messages,
            stream=True,
            max_tokens=max_tokens,
            params=params,
            ctx=CallContext(tenant=tenant),
        )
        asyncio.run(_run(env, req))


async def _run(env: Env, req: ChatRequest) -> None:
    service = build_service(env.settings, env.home)
    try:
        started = time.perf_counter()
        first: float | None = None
        with console.status(f"[dim]waiting for {req.model} (a local model loads on first use)…[/dim]"):
            stream = service.chat_stream(req)
            chunk = await anext(stream, None)
        while chunk is not None:
            if chunk.text:
                first = first or time.perf_counter()
                console.print(chunk.text, end="", highlight=False, markup=False, soft_wrap=True)
            chunk = await anext(stream, None)
        console.print()
        rec = req.ctx.record
        if rec is not None:
            ttft = f"{(first - started) * 1000:.0f} ms" if first else "—"
            console.print(
                f"[dim]{rec.deployment} · {rec.input_tokens}→{rec.output_tokens} tokens · "
                f"{rec.latency_ms:.0f} ms (first token {ttft}) · cost {fmt_cost(rec.cost_usd)} · "
                f"trace {rec.id}[/dim]",
                highlight=False,
            )
    finally:
        await close_service(service)
