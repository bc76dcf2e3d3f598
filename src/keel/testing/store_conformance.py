"""One conformance suite for every store backend: subclass ``StoreConformance`` in a test module and
give it an ``opener`` fixture (a callable returning a new ``Database`` connection to one empty,
migrated store). SQLite and Postgres both inherit it; so can a third-party backend.

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def opener(self, tmp_path): return lambda: open_sqlite(tmp_path / "k.db")

Tenancy is part of the contract: every read of tenant data names the tenant, and another tenant's
object is not found — never returned, changed or confirmed.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keel.errors import UserError
from keel.store import Store
from keel.store.budgets import Hold, Usage
from keel.store.db import Database
from keel.store.feedback import TraceNotFound
from keel.store.prompts import Actor
from keel.store.traces import TraceRecord, encode_cursor

Opener = Callable[[], Database]


def trace(tenant: str, **fields: object) -> TraceRecord:
    base: dict[str, object] = {"id": uuid.uuid4().hex, "ts": time.time(), "operation": "chat", "tenant": tenant}
    base.update(fields)
    return TraceRecord(**base)  # type: ignore[arg-type]


def in_threads(n: int, work: Callable[[int], None]) -> None:
    """Run ``work(0)`` … ``work(n - 1)`` in threads at once; the first error any raised is raised here."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # surfaced below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]


class StoreConformance:
    @pytest.fixture
    def store(self, opener: Opener) -> Iterator[Store]:
        with Store(opener()) as store:
            yield store

    # -- keys and tenants ----------------------------------------------------------------------------
    def test_keys_belong_to_one_tenant_and_role(self, store: Store) -> None:
        key, info = store.keys.create("acme", "ci", role="reviewer")
        assert key.startswith("keel-") and info.role == "reviewer" and info.tenant == "acme"
        caller = store.keys.caller(key)
        assert caller is not None and (caller.tenant, caller.key, caller.role) == ("acme", info.id, "reviewer")
        store.keys.create("globex")
        assert [k.tenant for k in store.keys.find("acme")] == ["acme"]
        assert {k.tenant for k in store.keys.find()} == {"acme", "globex"}
        assert store.keys.caller("keel-nope") is None
        with pytest.raises(UserError, match="unknown role"):
            store.keys.create("acme", role="root")

    def test_revoking_is_scoped_and_deleting_a_tenant_revokes_its_keys(self, store: Store) -> None:
        key, info = store.keys.create("acme")
        other, _ = store.keys.create("globex")
        assert not store.keys.revoke(info.id, tenant="globex")  # not globex's to revoke
        assert store.keys.caller(key) is not None
        assert store.keys.delete_tenant("acme") == 1
        assert store.keys.caller(key) is None and store.keys.caller(other) is not None
        with pytest.raises(UserError, match="was deleted"):
            store.keys.create("acme")
        assert store.keys.revoke(store.keys.find("globex")[0].id)

    def test_tenant_names_with_odd_characters_round_trip(self, store: Store) -> None:
        for name in ("Ünïcode GmbH", "o'brien; DROP TABLE api_keys", "100% <script>", "租户"):
            key, _ = store.keys.create(name)
            found = store.keys.caller(key)
            assert found is not None and found.tenant == name
        for bad in ("", "   ", "x" * 129, "tab\tname"):
            with pytest.raises(UserError, match="tenant name"):
                store.keys.create(bad)

    # -- traces ----------------------------------------------------------------------------------------
    def test_traces_are_read_within_their_tenant(self, store: Store) -> None:
        mine = trace("acme", user="u1", feature="support", cost_usd=0.5, input_tokens=10)
        theirs = trace("globex", user="u1", feature="support", cost_usd=2.0)
        store.traces.write([mine, theirs])
        assert [r.id for r in store.traces.find(tenant="acme")] == [mine.id]
        assert store.traces.get(theirs.id, tenant="acme") is None
        assert store.traces.get(theirs.id[:10], tenant="acme") is None
        got = store.traces.get(mine.id, tenant="acme")
        assert got is not None and got.user == "u1" and got.cost_usd == 0.5
        assert store.traces.exists(mine.id, tenant="acme") and not store.traces.exists(theirs.id, tenant="acme")
        assert {r.id for r in store.traces.find(tenant=None)} == {mine.id, theirs.id}  # the admin's view
        by = store.traces.cost_summary(["feature"], tenant="acme")
        assert by[0]["feature"] == "support" and by[0]["cost_usd"] == pytest.approx(0.5) and by[0]["calls"] == 1

    def test_traces_filter_and_page_by_cursor_without_gaps(self, store: Store) -> None:
        now = time.time()
        rows = [trace("acme", ts=now - i, feature="a" if i % 2 else "b", model="m") for i in range(25)]
        rows.append(trace("acme", ts=now - 3, feature="a", status="error"))  # a tie on ts
        store.traces.write(rows)
        seen: list[str] = []
        cursor = None
        while True:
            page = store.traces.find(tenant="acme", limit=7, cursor=cursor)
            seen += [r.id for r in page]
            if len(page) < 7:
                break
            cursor = encode_cursor(page[-1])
        assert sorted(seen) == sorted(r.id for r in rows) and len(seen) == len(set(seen))
        assert {r.feature for r in store.traces.find(tenant="acme", limit=100, feature="a")} == {"a"}
        assert [r.status for r in store.traces.find(tenant="acme", status="error")] == ["error"]
        assert len(store.traces.find(tenant="acme", limit=100, model="m")) == 25
        with pytest.raises(UserError, match="cursor"):
            store.traces.find(tenant="acme", cursor="not a cursor")

    def test_traces_filter_by_free_text_cost_latency_and_error_type(self, store: Store) -> None:
        now = time.time()
        rows = [
            trace("acme", ts=now - 3, request={"q": "Where is my REFUND?"}, cost_usd=0.5, latency_ms=900.0),
            trace("acme", ts=now - 2, response="50% off_today", status="error", error_type="UpstreamTimeout"),
            trace("acme", ts=now - 1, request={"q": "ünïcode refund"}, latency_ms=10.0),
            trace("globex", ts=now, request={"q": "refund please"}),
        ]
        store.traces.write(rows)

        def ids(**kw: Any) -> list[str]:
            return [r.id for r in store.traces.find(tenant="acme", **kw)]

        assert ids(text="refund") == [rows[2].id, rows[0].id]  # case-folded, newest first, this tenant only
        assert ids(text="50%") == [rows[1].id] and ids(text="%") == [rows[1].id]  # wildcards are literals
        assert ids(text="o_f") == [] and ids(text="off_t") == [rows[1].id]  # "_" is no wildcard either
        assert ids(text="ünïcode") == [rows[2].id]
        assert ids(text="refund", scan=1) == [rows[2].id]  # only the newest row past the cursor was read
        assert ids(min_cost=0.1) == [rows[0].id] and ids(min_latency_ms=100) == [rows[0].id]
        assert ids(error_type="UpstreamTimeout") == [rows[1].id]
        first = store.traces.find(tenant="acme", text="refund", limit=1)
        assert [r.id for r in store.traces.find(tenant="acme", text="refund", cursor=encode_cursor(first[0]))] == [
            rows[0].id
        ]

    def test_rewriting_a_trace_replaces_it_and_retention_deletes_old_rows(self, store: Store) -> None:
        old = trace("acme", ts=time.time() - 40 * 86400)
        fresh = trace("acme", status="ok")
        store.traces.write([old, fresh])
        fresh.status = "error"
        store.traces.write([fresh])
        got = store.traces.get(fresh.id, tenant="acme")
        assert got is not None and got.status == "error"
        assert store.traces.purge(time.time() - 30 * 86400, batch=1) == 1
        assert [r.id for r in store.traces.find(tenant="acme")] == [fresh.id]

    def test_the_dashboard_query_buckets_by_hour_with_percentiles(self, store: Store) -> None:
        hour = 7200 * (int(time.time()) // 7200 - 3)  # aligned to two hours: the 7,200 s buckets below
        rows = [trace("acme", ts=hour + i, feature="a", latency_ms=float(i + 1), cost_usd=0.01) for i in range(10)]
        rows += [trace("acme", ts=hour + 3600 + 1, feature="a", latency_ms=5.0, status="error", ttft_ms=2.0)]
        rows += [trace("acme", ts=hour + 2, feature="b", latency_ms=None, user="u1", cached_tokens=7)]
        rows += [trace("globex", ts=hour, feature="a")]
        rows += [trace("acme", ts=hour + 3, feature="a", operation="feature")]  # a run: its calls are counted
        store.traces.write(rows)
        got = store.traces.dashboard(tenant="acme", since=hour - 1, by="feature")
        shape = [(r["bucket"], r["value"], r["calls"], r["errors"], r["runs"]) for r in got]
        assert shape == [(hour, "a", 10, 0, 1), (hour, "b", 1, 0, 0), (hour + 3600, "a", 1, 1, 0)]
        first = got[0]  # percentiles from the log histogram: within 5% of the sample at that rank
        assert first["cost_usd"] == pytest.approx(0.1) and first["p50_ms"] == pytest.approx(5.0, rel=0.05)
        assert first["p75_ms"] == pytest.approx(8.0, rel=0.05) and first["p95_ms"] == pytest.approx(10.0, rel=0.05)
        assert got[1]["p50_ms"] is None and got[1]["cached_tokens"] == 7
        assert got[2]["ttft_p50_ms"] == pytest.approx(2.0, rel=0.05) and first["ttft_p50_ms"] is None
        two_hours = store.traces.dashboard(tenant="acme", since=hour - 1, bucket_s=7200)
        assert [(r["value"], r["calls"], r["runs"]) for r in two_hours] == [(None, 12, 1)]
        assert [r["calls"] for r in store.traces.dashboard(tenant="acme", since=hour - 1, feature="b")] == [1]
        whole = store.traces.dashboard(tenant=None, since=hour - 1, by="tenant", bucket_s=0)
        assert [(r["value"], r["calls"]) for r in whole] == [("acme", 12), ("globex", 1)]
        users = store.traces.dashboard(tenant="acme", since=hour - 1, by="user", bucket_s=0)
        assert sorted((r["value"] or "", r["calls"]) for r in users) == [("", 11), ("u1", 1)]
        assert users[0]["p95_ms"] is None  # users keep no histogram
        only = store.traces.dashboard(tenant="acme", since=hour - 1, by="user", bucket_s=0, values=["u1"])
        assert [(r["value"], r["calls"]) for r in only] == [("u1", 1)]
        assert store.traces.dashboard(tenant="acme", since=hour - 1, by="feature", values=[]) == []

    def test_five_minute_rollups_are_pruned_after_two_days_and_hours_kept(self, store: Store) -> None:
        now = time.time()
        store.traces.write([trace("acme", ts=now - 3 * 86_400, feature="a"), trace("acme", ts=now, feature="a")])

        def rows(grain: int) -> int:
            return int(store.db.scalar("SELECT count(*) FROM trace_rollup WHERE grain = ? AND dim = ''", (grain,)))

        assert rows(300) == 2 and rows(3600) == 2
        assert store.traces.prune_rollups() == 3  # the old call's five minutes: tenant, feature and model rows
        assert rows(300) == 1 and rows(3600) == 2
        week = store.traces.dashboard(tenant="acme", since=now - 7 * 86_400, bucket_s=0)
        assert week[0]["calls"] == 2  # the hours still count it

    def test_concurrent_writers_lose_no_trace(self, store: Store, opener: Opener) -> None:
        def write(i: int) -> None:
            with Store(opener()) as mine:
                for j in range(20):
                    mine.traces.write([trace("acme", user=f"w{i}-{j}")])

        in_threads(3, write)
        assert store.traces.count(tenant="acme") == 60

    # -- feedback ----------------------------------------------------------------------------------------
    def test_feedback_is_its_traces_tenants(self, store: Store) -> None:
        mine, theirs = trace("acme"), trace("globex")
        store.traces.write([mine, theirs])
        row = store.feedback.add(mine.id, "helpful", True, tenant="acme", user="u1")
        assert row.value == 1.0 and row.label == "true"
        with pytest.raises(TraceNotFound):
            store.feedback.add(theirs.id, "helpful", False, tenant="acme")
        assert store.feedback.for_trace(theirs.id, tenant="acme") == []
        assert [f.id for f in store.feedback.for_trace(mine.id, tenant="acme")] == [row.id]
        assert store.feedback.for_trace(mine.id, tenant="globex") == []

    # -- prompts -----------------------------------------------------------------------------------------
    def test_prompt_versions_labels_and_moves(self, store: Store) -> None:
        p = store.prompts
        v1 = p.add_version("support", "h1", "one", commit=None, author="ann")
        assert (v1, p.add_version("support", "h1", "one", commit=None, author="ann")) == (1, 1)
        assert p.add_version("support", "h2", "two", commit="abc", author="bob") == 2
        assert p.label("support", "production") == 1  # the first version is production
        assert p.move("support", "production", 2, "ship", Actor("acme", "key:k1"))
        assert not p.move("support", "production", 9, "no such version", Actor())
        moves = p.moves("support", "production")
        assert [(m["from_version"], m["to_version"]) for m in moves] == [(None, 1), (1, 2)]
        assert moves[-1]["actor"] == "key:k1" and moves[-1]["tenant"] == "acme"
        assert [r["labels"] for r in p.versions("support")] == [(), ("production",)]
        assert p.source("support", 2) == "two" and p.source("support", 3) is None

    def test_concurrent_label_moves_lose_none(self, store: Store, opener: Opener) -> None:
        for i in range(1, 5):
            store.prompts.add_version("support", f"h{i}", f"text {i}", commit=None, author=None)

        def move(i: int) -> None:
            with Store(opener()) as mine:
                for j in range(10):
                    assert mine.prompts.move("support", "staging", 1 + (i + j) % 4, f"m{i}-{j}", Actor())

        in_threads(4, move)
        moves = store.prompts.moves("support", "staging")
        assert len(moves) == 40
        for before, after in itertools.pairwise(moves):  # each move starts where the last ended
            assert after["from_version"] == before["to_version"]

    def test_concurrent_syncs_make_one_version(self, store: Store, opener: Opener) -> None:
        got: list[int] = []

        def sync(_: int) -> None:
            with Store(opener()) as mine:
                got.append(mine.prompts.add_version("new", "same-hash", "text", commit=None, author=None))

        in_threads(4, sync)
        assert got == [1, 1, 1, 1] and len(store.prompts.versions("new")) == 1

    # -- experiments ---------------------------------------------------------------------------------------
    def test_one_running_experiment_per_tenant_and_feature(self, store: Store) -> None:
        e = store.experiments
        assert e.insert("acme", "x1", "support", "[]", time.time())
        assert not e.insert("acme", "x2", "support", "[]", time.time())
        assert e.insert("globex", "x1", "support", "[]", time.time())  # same name, another tenant
        assert e.get("globex", "x1") is not None and e.get("initech", "x1") is None
        e.stop("acme", "x1", "b", "done")
        stopped = e.get("acme", "x1")
        assert stopped is not None and stopped["status"] == "stopped" and stopped["winner"] == "b"
        assert e.running("globex", "support") is not None and e.running("acme", "support") is None
        assert [x["name"] for x in e.find("acme")] == ["x1"]

    # -- evals ---------------------------------------------------------------------------------------------
    def test_eval_runs_cache_and_promotions_are_per_tenant(self, store: Store) -> None:
        ev = store.evals
        run = {"id": "r1", "suite": "s", "feature": "f", "started": time.time(), "status": "done", "label": "main",
               "summary": "{}"}  # fmt: skip
        ev.save_run("acme", run, [("c1", '{"a": 1}'), ("c2", '{"a": 2}')])
        loaded = ev.load_run("acme", "s", "main")
        assert loaded is not None and loaded[0]["id"] == "r1" and len(loaded[1]) == 2
        assert ev.load_run("globex", "s", "main") is None and ev.load_run("globex", "s", "r1") is None
        ev.cache("acme", "k", "s", "c1", "result-a")
        ev.cache("globex", "k", "s", "c1", "result-g")
        assert (ev.cached("acme", "k"), ev.cached("globex", "k")) == ("result-a", "result-g")
        assert ev.clear_cache("acme", "s") == 1 and ev.cached("globex", "k") == "result-g"
        ev.mark_promoted("acme", "s", [("t1", "c9")])
        ev.mark_promoted("acme", "s", [("t1", "c9")])  # twice is once
        assert ev.promoted("acme", "s") == {"t1"} and ev.promoted("globex", "s") == set()

    # -- answer cache ----------------------------------------------------------------------------------------
    def test_answer_cache_entries_expire_and_count_per_tenant(self, store: Store) -> None:
        a = store.answers
        a.put("k1", tenant="acme", scope="s1", feature="f", text="q", vector=b"\x00\x00\x80?", value="{}",
              trace_id=None, ttl_s=60)  # fmt: skip
        a.put("k2", tenant="globex", scope="s2", feature="f", text="q", vector=None, value="{}",
              trace_id=None, ttl_s=-1)  # fmt: skip
        assert a.get("k1") is not None and a.get("k2") is None  # expired
        assert a.vectors("s1", 10) == [("k1", b"\x00\x00\x80?")] and a.stamp("s1")[0] == 1
        a.hit("k1")
        stats = a.stats(tenant="acme")
        assert [(s["feature"], s["entries"], s["hits"]) for s in stats] == [("f", 1, 1)]
        assert a.clear(tenant="globex", expired_only=True) == 1 and a.get("k1") is not None

    # -- budgets -------------------------------------------------------------------------------------------
    def test_budget_holds_are_all_or_nothing_across_connections(self, store: Store, opener: Opener) -> None:
        limit = 50 * 20  # room for exactly 50 holds of 20

        def refuse(i: int, used: Usage) -> bool:
            return used.spent_nusd + used.held_nusd + 20 > limit

        granted: list[str] = []

        def reserve(n: int) -> None:
            with Store(opener()) as mine:
                for i in range(25):
                    holds = [Hold("b|x|day", 20, 0), Hold(f"other|{n}|day", 1, 0)]
                    if mine.budgets.reserve(f"r{n}-{i}", holds, 60, refuse) is None:
                        granted.append(f"r{n}-{i}")

        in_threads(4, reserve)
        assert len(granted) == 50
        assert store.budgets.usage("b|x|day").held_nusd == limit
        done = store.budgets.settle(granted[0], [("b|x|day", time.time() + 86400)], 7, 3, lambda *_: None)
        assert done == [] and store.budgets.usage("b|x|day") == Usage(7, 3, limit - 20, 0)
        assert store.budgets.buckets("b") == ["b|x|day"]
