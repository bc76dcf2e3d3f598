"""``keel review list|show|claim|approve|edit|reject|release|add|stats``: the review queue in the
terminal, on the configured store (the same items ``/v1/review`` and the dashboard show). Deciding
claims the item first when no one holds it, so ``keel review approve ID`` is one step; an item
someone else holds is refused with who and until when."""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.panel import Panel
from rich.table import Table

from keel.cli.common import TENANT, Env, console, fmt_cost, fmt_ts, load_env
from keel.errors import ReviewItemNotFound, UserError
from keel.store import Store
from keel.store.reviews import STATES, ReviewItem

if TYPE_CHECKING:
    from keel.review import ReviewQueue

CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")
AS = typer.Option(None, "--as", help="who decides (default: your login name)")
REASON = typer.Option(None, "--reason", help="why, kept with the decision")
app = typer.Typer(help="Human review: list, claim and decide the answers routed to a person.", no_args_is_help=True)


def _queue(env: Env, store: Store) -> ReviewQueue:
    from keel.review import ReviewQueue  # the CLI starts without the feature pipeline's imports

    return ReviewQueue(store, env.settings, env.settings.project_root)


def item_json(item: ReviewItem, *, raw: bool = False) -> dict[str, Any]:
    from keel.review.items import item_json as shape

    return shape(item, raw=raw)


def _who(name: str | None) -> str:
    return name or getpass.getuser()


@app.command("list")
def list_(
    queue: str | None = typer.Option(None, help="one queue (default: all)"),
    status: str | None = typer.Option("pending", help=f"one of {', '.join(STATES)}; 'all' for every item"),
    limit: int = typer.Option(50, min=1, max=500),
    json: bool = typer.Option(False, "--json"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """A tenant's review items, oldest first (the order to work in)."""
    env = load_env(config)
    with env.store() as store:
        if queue is not None:
            _queue(env, store).check_queue(queue)
        chosen = None if status == "all" else status
        rows = store.reviews.find(tenant=tenant, queue=queue, status=chosen, limit=limit)
    if json:
        console.print_json(orjson.dumps([item_json(i) for i in rows]).decode())
        return
    table = Table(
        "item", "queue", "status", "feature", "confidence", "why", "waiting", "due", title=f"review: {tenant}"
    )
    now = time.time()
    for i in rows:
        due = "[red]breached[/red]" if i.breached else _ago(i.due - now, ahead=True)
        shown = i.status if i.status != "claimed" else f"claimed by {i.claimed_by}"
        conf = f"{i.confidence:.2f}" if i.confidence is not None else "—"
        table.add_row(i.id, i.queue, shown, i.feature or "", conf, (i.reason or "")[:50], _ago(now - i.created), due)
    console.print(table if rows else "nothing to review: features route answers here with review: in their spec")


@app.command()
def show(
    item_id: str = typer.Argument(...),
    raw: bool = typer.Option(False, "--raw", help="a held answer as it will be served, not as traces keep it"),
    json: bool = typer.Option(False, "--json"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """One item: the question, the answer, the cited sources, the guard scores, prompt, model and cost."""
    env = load_env(config)
    with env.store() as store:
        item = _get(store, item_id, tenant)
    shown = item_json(item, raw=raw)
    if json:
        console.print_json(orjson.dumps(shown).decode())
        return
    view = shown["item"]
    conf = f"{item.confidence:.2f}" if item.confidence is not None else "—"
    head = (
        f"{item.queue} · {item.status} · {item.mode} · {item.feature} · prompt v{view.get('prompt_version')} · "
        f"{view.get('model')} · {fmt_cost(view.get('cost_usd'))} · confidence {conf} · trace {item.trace_id}"
    )
    console.print(f"[bold]{item.id}[/bold]  [dim]{head}[/dim]\n[dim]routed: {item.reason}[/dim]")
    console.print(Panel(_text(view.get("inputs")), title="question", title_align="left"))
    console.print(Panel(_text(view.get("answer")), title="answer", title_align="left"))
    for s in view.get("sources") or []:
        cites = "".join(f"\n  [green]cited:[/green] {c}" for c in s.get("cited") or [])
        console.print(f"[{s['number']}] [bold]{s.get('title') or s.get('doc')}[/bold] ({s['score']}){cites}")
    for name, g in (view.get("guards") or {}).items():
        console.print(f"guard {name}: {g['score']:.2f} — {g.get('reason') or ''}", highlight=False)
    if item.action is not None:
        console.print(f"[bold]decided:[/bold] {item.action} by {item.reviewer} at {fmt_ts(item.decided or 0)}")


@app.command()
def claim(
    item_id: str | None = typer.Argument(None, help="an item; or --next --queue Q for the oldest unclaimed one"),
    next_: bool = typer.Option(False, "--next", help="claim the queue's oldest unclaimed item"),
    queue: str | None = typer.Option(None),
    who: str | None = AS,
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Claim an item: no one else can decide it until the claim runs out (review.claim_minutes)."""
    env = load_env(config)
    with env.store() as store:
        q = _queue(env, store)
        if next_:
            if queue is None:
                raise UserError("--next needs --queue")
            q.check_queue(queue)
            ttl = env.settings.review.claim_minutes * 60
            item = store.reviews.claim_next(tenant=tenant, queue=queue, who=_who(who), ttl_s=ttl)
            if item is None:
                console.print(f"queue {queue} has no unclaimed item")
                raise typer.Exit(1)
        elif item_id is None:
            raise UserError("give an item id, or --next --queue Q")
        else:
            item = q.claim(item_id, tenant=tenant, who=_who(who))
    console.print(f"claimed {item.id} until {fmt_ts(item.claim_until or 0)}")


@app.command()
def release(item_id: str, who: str | None = AS, tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Give a claim back before it runs out."""
    env = load_env(config)
    with env.store() as store:
        store.reviews.release(item_id, tenant=tenant, who=_who(who))
    console.print(f"released {item_id}")


def _decide(item_id: str, body: dict[str, Any], who: str | None, tenant: str, config: str | None) -> None:
    env = load_env(config)
    name = _who(who)
    with env.store() as store:
        q = _queue(env, store)
        item = _get(store, item_id, tenant)
        if item.claimed_by != name:
            q.claim(item_id, tenant=tenant, who=name)  # refused (409) while someone else holds it
        decided = q.decide(item_id, body, tenant=tenant, who=name)
        job = decided.job_id and store.jobs.get(decided.job_id, tenant=tenant)
    ended = f"; job {job.id} {job.status}" if job else ""
    console.print(f"{decided.id}: {decided.action} by {name}{ended}")


@app.command()
def approve(item_id: str, reason: str | None = REASON, who: str | None = AS, tenant: str = TENANT,
            config: str | None = CONFIG) -> None:  # fmt: skip
    """Approve the answer: a held one is served; it becomes a correction (and an eval case on promote)."""
    _decide(item_id, {"action": "approve", "reason": reason}, who, tenant, config)


@app.command()
def edit(
    item_id: str,
    output: str | None = typer.Option(None, help="the corrected answer (JSON for features with a schema)"),
    output_file: Path | None = typer.Option(None, help="read the corrected answer from this file"),
    reason: str | None = REASON,
    who: str | None = AS,
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Replace the answer: a held one is served as edited (checked against the feature's schema)."""
    if (output is None) == (output_file is None):
        raise UserError("give the corrected answer with --output TEXT or --output-file PATH")
    text = output if output is not None else Path(str(output_file)).read_text(encoding="utf-8")
    _decide(item_id, {"action": "edit", "output": text, "reason": reason}, who, tenant, config)


@app.command()
def reject(item_id: str, reason: str | None = REASON, who: str | None = AS, tenant: str = TENANT,
           config: str | None = CONFIG) -> None:  # fmt: skip
    """Reject the answer: a held one serves the feature's fallback."""
    _decide(item_id, {"action": "reject", "reason": reason}, who, tenant, config)


@app.command()
def add(
    trace_id: str,
    queue: str = typer.Option(..., help="the queue to send it to"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Send a feature run to a queue by hand (reviewed after the fact; a trace is queued once)."""
    env = load_env(config)
    with env.store() as store:
        item, created = _queue(env, store).add_trace(trace_id, queue, tenant=tenant)
    console.print(f"{'queued' if created else 'already queued as'} {item.id} in {item.queue}")


@app.command()
def backfill(
    feature: str = typer.Argument(..., help="the feature whose past runs to look at"),
    since: str = typer.Option("7d", help="runs newer than this: 7d, 24h or a date"),
    when: str | None = typer.Option(None, help="a condition (default: the spec's review.when)"),
    queue: str | None = typer.Option(None, help="the queue (default: the spec's review.queue)"),
    limit: int = typer.Option(1000, min=1, max=100_000, help="at most this many items"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count what would be queued; queue nothing"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Apply a condition to runs already served and queue the ones it holds on (reviewed after the
    fact; a trace with an item keeps it) — after a threshold changed, or for a feature new to review."""
    from keel.features.conditions import ConditionError, parse_condition
    from keel.features.spec import load_feature
    from keel.review.backfill import backfill as run_backfill
    from keel.timespan import parse_since

    env = load_env(config)
    spec = load_feature(env.settings.project_root, feature)
    spec.check_tenant(tenant)
    review = spec.review
    text = when if when is not None else (review.when if review is not None else None)
    if not isinstance(text, str):
        raise UserError(f"give --when: features/{feature}.yaml has no review.when condition to apply")
    try:
        condition = parse_condition(text)
    except ConditionError as exc:
        raise UserError(f"--when: {exc}") from None
    name = queue or (review.queue if review is not None else None)
    if name is None:
        raise UserError(f"give --queue: features/{feature}.yaml has no review section naming one")
    with env.store() as store:
        _queue(env, store).check_queue(name)
        with console.status(f"reading {feature}'s runs since {since}…"):
            found = run_backfill(
                store, feature, condition, queue=name, since=parse_since(since) or 0.0, tenant=tenant,
                sla_minutes=review.sla_minutes if review is not None else 24 * 60,
                capture=env.settings.tracing.capture, limit=limit, dry_run=dry_run,
            )  # fmt: skip
    verb = "would queue" if dry_run else "queued"
    count = found.matched if dry_run else found.queued
    already = f", {found.already} already in review" if found.already else ""
    console.print(
        f"{found.scanned} run(s) read, {found.matched} where {condition.text}: {verb} {count} in {name}{already}"
    )


@app.command()
def stats(
    queue: str | None = typer.Option(None),
    json: bool = typer.Option(False, "--json"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Per queue: backlog and age, SLA breaches, decision rates per prompt version and model, and how
    well confidence agrees with the reviewers (is the review.when threshold right?)."""
    from keel.review.stats import queue_stats

    env = load_env(config)
    with env.store() as store:
        if queue is not None:
            _queue(env, store).check_queue(queue)
        shown = queue_stats(store.reviews.queues(tenant=tenant), store.reviews.decisions(tenant=tenant, queue=queue))
    shown = [q for q in shown if queue is None or q["queue"] == queue]
    if json:
        console.print_json(orjson.dumps(shown).decode())
        return
    if not shown:
        console.print("no review items yet")
        return
    head = Table("queue", "backlog", "claimed", "oldest", "SLA breaches", "decided", "expired", title="review queues")
    for q in shown:
        oldest = _ago(q["oldest_age_s"]) if q["oldest_age_s"] is not None else "—"
        head.add_row(q["queue"], str(q["backlog"]), str(q["claimed"]), oldest, str(q["sla_breaches"]),
                     str(q["decided"]), str(q["expired"]))  # fmt: skip
    console.print(head)
    for q in shown:
        for key, label in (("by_prompt_version", "prompt_version"), ("by_model", "model"), ("by_reviewer", "reviewer")):
            if not q[key]:
                continue
            t = Table(label, "n", "approve", "edit", "reject", title=f"{q['queue']}: decisions by {label}")
            for r in q[key]:
                t.add_row(str(r[label]), str(r["n"]), _pct(r["approve_rate"]), _pct(r["edit_rate"]),
                          _pct(r["reject_rate"]))  # fmt: skip
            console.print(t)
        a = q["agreement"]
        if a["n"]:
            t = Table("confidence <", "load", "wrong caught (recall)", "precision", title=_agree_title(q["queue"], a))
            for row in a["thresholds"]:
                t.add_row(f"{row['threshold']:.1f}", _pct(row["load"]), _pct(row["recall"]), _pct(row["precision"]))
            console.print(t)


def _agree_title(queue: str, a: dict[str, Any]) -> str:
    auc = f"AUC {a['auc']:.2f}" if a["auc"] is not None else "AUC — (needs right and wrong answers)"
    sampled = f"; sampled {a['sampled_n']}: AUC {a['sampled_auc']:.2f}" if a["sampled_auc"] is not None else ""
    return f"{queue}: confidence vs reviewers — {a['n']} decided, {a['wrong']} edited or rejected, {auc}{sampled}"


def _get(store: Store, item_id: str, tenant: str) -> ReviewItem:
    item = store.reviews.get(item_id, tenant=tenant)
    if item is None:
        raise ReviewItemNotFound(f"no review item '{item_id[:80]}' (keel review list shows them)")
    return item


def _pct(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "—"


def _ago(seconds: float, *, ahead: bool = False) -> str:
    s = max(0.0, seconds)
    text = f"{s:.0f} s" if s < 120 else (f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h")
    return f"in {text}" if ahead else text


def _text(value: Any) -> str:
    if value is None:
        return "[dim](not captured: tracing.capture is off)[/dim]"
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
