"""The crash journal end to end: ``keel serve`` killed with SIGKILL mid-burst, then a restart.

What the kill interrupts is settled, never silently dropped: calls in flight become ``interrupted``
rows at their worst case, rows the writer had not stored are rebuilt from the journal, and the
ledger ends at provider-reported cost plus the worst case of the interrupted calls, exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from keel.config.loader import load_settings
from keel.cost.budgets import NANO
from keel.cost.ledger import StoreLedger
from keel.gateway.recovery import INTERRUPTED, REBUILT
from keel.gateway.runtime import build_service, close_service
from keel.store import open_store
from keel.store.journal import Journal, dead
from keel.store.traces import TraceRecord
from keel.testing import Fault, FaultServer
from keel.testing.processes import serve_keel

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the journal needs flock")


def _config(tmp_path: Path, upstream: FaultServer) -> Path:
    config = tmp_path / "keel.yaml"
    config.write_text(
        f"deployments:\n  up: {{provider: openai, model: gpt-4o-mini, base_url: '{upstream.base_url}'}}\n"
        "models:\n  up: {deployments: [up], retry: {attempts: 1}}\n"
        "budgets:\n  all: {usd: 100}\n"
        "tracing: {flush_interval_s: 30}\n"  # nothing reaches the store before the kill: the journal must
    )
    return config


def test_kill_9_mid_burst_loses_no_call_and_no_cent(tmp_path: Path, upstream: FaultServer) -> None:
    home = tmp_path / "home"
    config = _config(tmp_path, upstream)
    upstream.inject(*[Fault.stall(60)] * 3)  # three calls will still be at the provider when the kill comes
    proc, base = serve_keel(config, home, dict(os.environ), no_auth=True)
    body = {"model": "up", "messages": [{"role": "user", "content": "what is a journal for"}], "max_tokens": 200}
    hanging = [threading.Thread(target=_post, args=(base, body), daemon=True) for _ in range(3)]
    try:
        for t in hanging:
            t.start()
        deadline = time.monotonic() + 10
        while upstream.chat_calls < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream.chat_calls == 3
        with httpx.Client(timeout=30) as client:
            served = [client.post(f"{base}/chat/completions", json=body) for _ in range(5)]
        assert [r.status_code for r in served] == [200] * 5
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    ids = [r.headers["x-keel-trace-id"] for r in served]
    settings = load_settings(config)
    with open_store(settings, home) as store:
        assert store.traces.present(ids) == set()  # the kill came inside the group-commit window

    service = build_service(settings, home)  # start-up recovers the dead process's journal
    try:
        found = service.recovered
        assert found is not None
        assert (found.journals, found.interrupted, found.rebuilt, found.settled) == (
            1,
            3,
            5,
            3,
        )  # the five served calls were settled before the kill
        admission = service.admission
        assert admission is not None
    finally:
        asyncio.run(close_service(service))

    with open_store(settings, home) as store:
        rebuilt = [store.traces.get(i, tenant=None) for i in ids]
        assert all(r is not None and r.status == "ok" and REBUILT in (r.notes or []) for r in rebuilt)
        assert all(r is not None and r.cost_usd and r.usage_source == "provider" for r in rebuilt)
        rows = store.traces.find(tenant=None, status="interrupted", limit=10)
        assert len(rows) == 3 and all(r.error == INTERRUPTED and r.cost_usd for r in rows)
        assert all(r.output_tokens == 200 and r.usage_source == "worst_case" for r in rows)
        worst = admission.worst_case("up", rows[0].input_tokens, 200)  # the dearest reachable price × the most
        assert all(r.cost_usd == worst / NANO for r in rows)
        ledger = StoreLedger(store.budgets)
        buckets = asyncio.run(ledger.buckets("all"))
        spent, _, held, _ = asyncio.run(ledger.usage(buckets[0]))
    expected = sum(r.cost_usd or 0 for r in rebuilt if r) + sum(r.cost_usd or 0 for r in rows)
    assert spent == pytest.approx(expected * NANO, abs=len(ids) + 3)  # exact, to a nano-dollar per call
    assert held == 0  # every hold settled, none left to expire

    again = build_service(settings, home)  # a second start finds nothing left and charges nothing twice
    try:
        assert again.recovered is not None and not again.recovered
    finally:
        asyncio.run(close_service(again))
    with open_store(settings, home) as store:
        assert asyncio.run(StoreLedger(store.budgets).usage(buckets[0]))[0] == spent
    assert list((home / "journal").glob("*.jsonl")) == []  # clean closes leave nothing behind


def _post(base: str, body: dict[str, object]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
        httpx.post(f"{base}/chat/completions", json=body, timeout=90)


def test_a_live_journal_is_never_recovered_and_a_dead_one_is_found(tmp_path: Path) -> None:
    live = Journal(tmp_path)
    live.begin({"id": "t1", "ts": 1.0, "operation": "chat"})
    assert list(dead(tmp_path)) == []  # its process (this one) holds the lock
    assert live._map is not None
    live._map.close()  # what a kill leaves: the lines in the file, and a lock nobody holds
    live._map = None
    os.close(live._lock)
    found = list(dead(tmp_path))
    assert len(found) == 1 and set(found[0].orphans) == {"t1"} and found[0].orphans["t1"].begun is not None
    found[0].remove()
    assert list(tmp_path.iterdir()) == []


def test_segments_rotate_carry_calls_in_flight_and_are_pruned_once_stored(tmp_path: Path) -> None:
    rounds = [0]
    journal = Journal(tmp_path, rounds=lambda: rounds[0], segment_bytes=2_000)
    journal.begin({"id": "long", "ts": 1.0, "operation": "chat", "alias": "up"})  # in flight throughout
    for i in range(100):
        journal.ended(TraceRecord(id=f"r{i}", ts=1.0, operation="chat"))
    segments = sorted(tmp_path.glob("*.jsonl"))
    assert len(segments) > 3
    rounds[0] = 2  # the writer stored everything retired so far
    journal.ended(TraceRecord(id="last", ts=1.0, operation="chat"))
    kept = sorted(tmp_path.glob("*.jsonl"))
    assert len(kept) == 1 and b'"long"' in kept[0].read_bytes()  # the open call was carried over
    journal.close()
    assert sorted(tmp_path.glob("*.jsonl")) == kept  # a call still in flight keeps its journal
