"""Start-up recovery from the crash journal (``keel.store.journal``): nothing a kill -9 interrupts
is lost silently.

For each journal whose process died:

- a call that **began and never ended** is written to the traces as status ``interrupted``, at
  its worst case (its input at the upper bound plus the most output it allowed, at the dearest
  deployment its alias could reach);
- a row that was **queued but never stored** (the writer's last ≤ 100 ms) is written from the
  journal, without its captured content, with a note saying so;
- a budget hold **never settled** is settled: at the ended call's cost, else at the worst case.

Rows are upserts, so a recovery cut short is simply done again at the next start. Every settle that
lands is written back to the dead journal, so a retried recovery never charges anything twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from keel.config.settings import KeelSettings
from keel.cost.budgets import NANO, Claim
from keel.gateway.admission import LEDGERS, Admission, spend
from keel.store import open_database
from keel.store.journal import DeadJournal, Orphan, dead
from keel.store.traces import TraceRecord, Traces
from keel.store.writer import BatchWriter

log = logging.getLogger("keel.gateway")

INTERRUPTED = "the process stopped (crash or kill) while this call was in flight; charged at its worst case"
REBUILT = "rebuilt from the crash journal: the process stopped before this row reached the store (content lost)"
_COLUMNS = {f.name for f in fields(TraceRecord)}


@dataclass(slots=True)
class Recovered:
    """What start-up found in dead journals (exported on ``/metrics``)."""

    journals: int = 0
    interrupted: int = 0  # calls in flight, written as interrupted at their worst case
    rebuilt: int = 0  # rows the writer had not stored, written from the journal
    settled: int = 0  # budget holds settled
    settled_usd: float = 0.0
    unreadable: int = 0  # journal lines cut by the kill

    def __bool__(self) -> bool:
        return bool(self.journals)

    def summary(self) -> str:
        return (
            f"recovered {self.journals} crashed process journal(s): {self.interrupted} call(s) interrupted in "
            f"flight (traced as 'interrupted' at their worst case), {self.rebuilt} trace row(s) rebuilt, "
            f"{self.settled} budget hold(s) settled (${self.settled_usd:.6f})"
            + (f", {self.unreadable} cut line(s) skipped" if self.unreadable else "")
        )


def recover(
    root: Path, settings: KeelSettings, home: Path, admission: Admission | None, writer: BatchWriter
) -> Recovered:
    found = Recovered()
    for journal in dead(root):
        try:
            if _recover(journal, settings, home, admission, writer, found):
                journal.remove()
        except Exception as exc:  # recovery must never stop a start; the journal stays for the next
            log.error("could not recover crash journal %s (%s); it is kept", journal.instance, _short(exc))
    if found:
        log.warning(found.summary())
    return found


def _recover(
    journal: DeadJournal,
    settings: KeelSettings,
    home: Path,
    admission: Admission | None,
    writer: BatchWriter,
    found: Recovered,
) -> bool:
    """True when everything the journal held is settled and it can go."""
    orphans = journal.orphans
    db = open_database(settings, home)
    try:
        stored = Traces(db).present(list(orphans))
    finally:
        db.close()
    found.journals += 1
    found.unreadable += journal.unreadable
    for orphan in orphans.values():
        rec = None if orphan.trace_id in stored else _row(orphan, admission)
        if rec is None:
            continue
        if rec.status == "interrupted":
            found.interrupted += 1
        else:
            found.rebuilt += 1
        writer.submit(rec)
    writer.flush()
    holds = [o for o in orphans.values() if o.held is not None and not o.settled]
    if not holds or admission is None:
        return True
    landed = _settle(holds, settings, home, admission)
    for _, nusd in landed:
        found.settled += 1
        found.settled_usd += nusd / NANO
    if landed:  # a retried recovery must not charge these again: their settlements join the journal
        done = journal.paths[0].with_name(f"{journal.instance}.settled.jsonl")
        with done.open("ab") as f:
            f.write(b"".join(orjson.dumps({"k": "s", "id": o.trace_id}) + b"\n" for o, _ in landed))
        journal.paths.append(done)
    return len(landed) == len(holds)


def _row(orphan: Orphan, admission: Admission | None) -> TraceRecord | None:
    if orphan.row is not None:
        rec = _record(orphan.row)
        rec.notes = [*(rec.notes or []), REBUILT]
        return rec
    begun = orphan.begun
    if begun is None:
        return None
    alias, in_tokens = begun.get("alias") or "", int(begun.get("in") or 0)
    out_tokens = admission.max_output(alias, begun.get("out")) if admission is not None else int(begun.get("out") or 0)
    worst = _worst(orphan, admission, alias, in_tokens, out_tokens)
    keep = ("tenant", "user", "feature", "stream", "parent", "prompt", "prompt_version", "experiment", "arm")
    return TraceRecord(
        id=orphan.trace_id,
        ts=float(begun.get("ts") or 0.0),
        operation=str(begun.get("operation") or "chat"),
        alias=alias or None,
        **{k: begun.get(k) for k in keep},  # type: ignore[arg-type]
        status="interrupted",
        error_type="Interrupted",
        error=INTERRUPTED,
        input_tokens=in_tokens,
        output_tokens=out_tokens if begun.get("operation") == "chat" else 0,
        usage_source="worst_case",
        cost_usd=None if worst is None else worst / NANO,
        cost_source="worst case: interrupted by a crash" if worst is not None else "unpriced: interrupted by a crash",
        notes=[INTERRUPTED],
    )


def _worst(orphan: Orphan, admission: Admission | None, alias: str, in_tokens: int, out_tokens: int) -> int | None:
    if orphan.held is not None:
        return int(orphan.held.get("worst") or 0)
    if admission is None or orphan.begun is None or orphan.begun.get("operation") != "chat":
        return None
    return admission.worst_case(alias, in_tokens, out_tokens)


def _settle(holds: list[Orphan], settings: KeelSettings, home: Path, admission: Admission) -> list[tuple[Orphan, int]]:
    """Settle each hold on a ledger of its own (start-up runs before the server's event loop), and
    say which landed."""

    async def run() -> list[tuple[Orphan, int]]:
        ledger, limiter = LEDGERS.get(settings.ledger.backend, where="ledger.backend")(settings, home)
        landed = []
        try:
            for orphan in holds:
                held = orphan.held
                assert held is not None
                claims = [_claim(c) for c in held["claims"]]
                worst = int(held.get("worst") or 0)
                if orphan.row is not None:
                    nusd, tokens = spend(worst, _record(orphan.row))
                else:
                    nusd, tokens = worst, max((c.tokens for c in claims), default=0)
                await ledger.settle(str(held["res"]), claims, nusd, tokens)
                landed.append((orphan, nusd))
        except Exception as exc:
            log.error("the ledger refused recovery settlements (%s); the rest wait for the next start", _short(exc))
        finally:
            await ledger.aclose()
            if limiter is not None:
                await limiter.aclose()
        return landed

    with ThreadPoolExecutor(1, thread_name_prefix="keel-recovery") as pool:
        return pool.submit(asyncio.run, run()).result()


def _record(row: dict[str, Any]) -> TraceRecord:
    """A trace row as the journal kept it (its known columns; content was never journaled)."""
    return TraceRecord(**{k: v for k, v in row.items() if k in _COLUMNS})


def _claim(data: dict[str, Any]) -> Claim:
    data = dict(data)
    data["resets"] = dt.datetime.fromisoformat(data["resets"])
    data["alerts"] = tuple(data.get("alerts") or ())
    return Claim(**data)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
