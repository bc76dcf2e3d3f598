"""``keel traces list|show|tail``."""

from __future__ import annotations

import time

import orjson
import typer
from rich.table import Table
from rich.tree import Tree

from keel.cli.common import console, fmt_cost, fmt_ts, load_env, parse_since
from keel.errors import UserError
from keel.store.traces import TraceRecord, as_dict

app = typer.Typer(help="Look at recorded calls.", no_args_is_help=True)
CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")


def _table(rows: list[TraceRecord], *, wide: bool = False) -> Table:
    """Calls as rows that fit 80 columns (``wide``: with deployment, first token, tenant and user)."""
    table = Table()
    names = ["when (UTC)", "trace", "what", "status", "tokens", "ms", "cost"]
    for name in [*names, *(["deployment", "ttft", "tenant", "user"] if wide else [])]:
        table.add_column(name, no_wrap=True)
    for r in rows:
        status = "[green]ok[/green]" if r.status == "ok" else f"[red]{r.status}[/red] {r.error_type or ''}"
        retries = f" [yellow]×{len(r.attempts)}[/yellow]" if len(r.attempts) > 1 else ""
        what = f"feature {r.feature}" if r.operation == "feature" else (r.alias or r.model or r.operation)
        cells = [
            time.strftime("%m-%d %H:%M:%S", time.gmtime(r.ts)),
            r.id[:8],
            f"{what}{retries}",
            status,
            f"{r.input_tokens}/{r.output_tokens}",
            f"{r.latency_ms or 0:.0f}",
            fmt_cost(r.cost_usd),
        ]
        if wide:
            ttft = f"{r.ttft_ms:.0f} ms" if r.ttft_ms else "—"
            cells += [r.deployment or "—", ttft, r.tenant or "", r.user or ""]
        table.add_row(*cells)
    return table


def _tree(rec: TraceRecord, children: list[TraceRecord]) -> Tree:
    """A feature run with its model calls under it, and each call's attempts under the call."""
    tree = Tree(
        f"[bold]feature {rec.feature}[/bold] {rec.id[:8]} · {rec.latency_ms or 0:.0f} ms · {fmt_cost(rec.cost_usd)}"
    )
    for child in children:
        status = "ok" if child.status == "ok" else f"[red]{child.status} {child.error_type or ''}[/red]"
        call = tree.add(
            f"{child.operation} {child.alias or ''} → {child.deployment or '—'} · {status} · "
            f"{child.input_tokens}/{child.output_tokens} tokens · {child.latency_ms or 0:.0f} ms · "
            f"{fmt_cost(child.cost_usd)} · {child.id[:8]}"
        )
        for a in child.attempts:
            _attempt(call, a)
    if not children:
        tree.add("[dim]no model calls (answered from the cache, or nothing found)[/dim]")
    return tree


def _attempt(node: Tree, a: dict[str, object]) -> None:
    started = float(a["started"])  # type: ignore[arg-type]
    ended = float(a.get("ended") or started)  # type: ignore[arg-type]
    outcome = "[green]ok[/green]" if not a.get("error_type") else f"[red]{a['error_type']}[/red] {a.get('error') or ''}"
    node.add(
        f"attempt {a['deployment']} ({a['provider']} {a['model']}) · {(ended - started) * 1000:.0f} ms · {outcome}"
    )


@app.command("list")
def list_(
    limit: int = typer.Option(20, min=1, max=10_000),
    since: str | None = typer.Option(None),
    status: str | None = typer.Option(None, help="ok, error or cancelled"),
    feature: str | None = typer.Option(None, help="only this feature's calls and runs"),
    user: str | None = typer.Option(None, help="only this user's"),
    tenant: str | None = typer.Option(None, help="only this tenant's (default: every tenant's)"),
    model: str | None = typer.Option(None, help="only calls to this model or alias"),
    wide: bool = typer.Option(False, "--wide", help="also the deployment, time to first token, tenant and user"),
    json: bool = typer.Option(False, "--json", help="print JSON lines"),
    config: str | None = CONFIG,
) -> None:
    """The newest calls first."""
    with load_env(config).store() as store:
        rows = store.traces.find(
            tenant=tenant,
            limit=limit,
            since=parse_since(since),
            status=status,
            feature=feature,
            user=user,
            model=model,
        )
    if json:
        for r in rows:
            print(orjson.dumps(as_dict(r)).decode())
    elif rows:
        console.print(_table(rows, wide=wide))
    else:
        console.print('no traces yet: send a request (`keel chat "hello"`)')


@app.command("show")
def show(
    trace_id: str = typer.Argument(..., help="the trace id (or its first characters)"), config: str | None = CONFIG
) -> None:
    """Everything recorded about one call."""
    with load_env(config).store() as store:
        rec = store.traces.get(trace_id, tenant=None)
        scores = store.feedback.for_trace(rec.id, tenant=None) if rec is not None else []
        children = store.traces.children(rec.id, tenant=None) if rec is not None else []
    if rec is None:
        raise UserError(f"no trace '{trace_id}'; see `keel traces list`")
    console.print(_table([rec], wide=True))
    console.print(f"[bold]cost[/bold] {fmt_cost(rec.cost_usd)} — {rec.cost_source}; usage: {rec.usage_source}")
    if rec.error:
        console.print(f"[bold red]error[/bold red] {rec.error_type}: {rec.error}", highlight=False)
    if rec.operation == "feature":
        console.print(_tree(rec, children))  # its model calls, each with its attempts
    else:
        attempts = Tree(f"[bold]attempts[/bold] ({len(rec.attempts)})")
        for a in rec.attempts:
            _attempt(attempts, a)
        console.print(attempts)
    if rec.request is not None:
        console.print("[bold]request[/bold]")
        console.print_json(orjson.dumps(rec.request).decode())
    if rec.response is not None:
        console.print("[bold]response[/bold]")
        console.print(rec.response, highlight=False, markup=False)
    if rec.operation == "feature":
        arm = f" · experiment {rec.experiment} arm {rec.arm}" if rec.arm else ""
        console.print(
            f"[bold]feature run[/bold] prompt {rec.prompt} v{rec.prompt_version}{arm} · {len(children)} call(s)"
        )
        for note in rec.notes or []:
            console.print(f"  [yellow]{note}[/yellow]", highlight=False)
    elif rec.parent:
        console.print(f"[dim]part of feature run {rec.parent}[/dim]")
    if scores:
        table = Table("name", "value", "comment", "correction", "user", "when", title="feedback")
        for f in scores:
            value = f.label if f.label is not None and f.value is None else (f.label or f"{f.value:g}")
            table.add_row(f.name, value, f.comment or "", f.correction or "", f.user or "", fmt_ts(f.at))
        console.print(table)


@app.command("feedback")
def feedback(
    trace_id: str = typer.Argument(..., help="the trace id (x-keel-trace-id, or the first characters)"),
    name: str = typer.Argument(..., help="what is scored, e.g. helpful, rating, category"),
    value: str | None = typer.Argument(None, help="true/false, a number, or a category"),
    comment: str | None = typer.Option(None, help="free text"),
    correction: str | None = typer.Option(None, help="the right answer"),
    user: str | None = typer.Option(None, help="who gave the feedback"),
    config: str | None = CONFIG,
) -> None:
    """Attach feedback to a trace, validated against keel.yaml feedback.scores (experiment reports read it;
    `keel evals promote --from-feedback` turns corrections and low scores into eval cases)."""
    parsed: object = value
    if value is not None:
        lowered = value.strip().lower()
        if lowered in ("true", "false", "yes", "no", "👍", "👎"):
            parsed = lowered in ("true", "yes", "👍")
        else:
            try:
                parsed = float(value)
            except ValueError:
                parsed = value
    env = load_env(config)
    with env.store() as store:
        rec = store.traces.get(trace_id, tenant=None)
        if rec is None:
            raise UserError(f"no trace '{trace_id}'; see `keel traces list`")
        row = store.feedback.add(
            rec.id,
            name,
            parsed,
            tenant=None,
            comment=comment,
            correction=correction,
            user=user,
            scores=env.settings.feedback,
        )
    shown = row.label if row.value is None else f"{row.value:g}"
    console.print(f"feedback {row.id}: {row.name} = {shown or '—'} on trace {row.trace_id}", highlight=False)


@app.command("tail")
def tail(
    interval: float = typer.Option(1.0, min=0.1),
    count: int = typer.Option(0, help="stop after N (0: never)"),
    config: str | None = CONFIG,
) -> None:
    """Follow new calls as they are recorded."""
    seen = 0
    with load_env(config).store() as store:
        last = time.time() - 1
        while True:
            rows = store.traces.find(tenant=None, limit=500, after_ts=last)
            if rows:
                console.print(_table(rows))
                last = rows[-1].ts
                seen += len(rows)
                if count and seen >= count:
                    return
            time.sleep(interval)
