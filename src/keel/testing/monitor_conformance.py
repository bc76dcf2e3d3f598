"""The conformance suite of the monitor store (keel.store.monitors): runs kept once, windows read in
time order and scoped by tenant, scores replaced not doubled, the judges' spend, input vectors,
one open alert per signal however many processes open it. ``tests/store/test_monitors.py`` runs it
on SQLite and on a real Postgres."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from keel.store import Store
from keel.store.monitors import MonitorRun, Score
from keel.testing.jobs_conformance import Opener
from keel.testing.store_conformance import in_threads


def run(i: int, *, tenant: str = "acme", feature: str = "support_answer", at: float | None = None) -> MonitorRun:
    return MonitorRun(
        tenant, f"t{i:05d}", feature, (at if at is not None else 1_000.0) + i,
        {"confidence": 0.5 + i / 1000, "refusal": i % 7 == 0, "guard:grounded": 0.9},
        prompt_version=7 + i % 2, model="local", index_version="v3", arm=None,
    )  # fmt: skip


def score(trace_id: str, *, check: str = "grounded", passed: bool = True, cost: float | None = 0.001) -> Score:
    return Score(
        "acme", trace_id, "quality", check, "support_answer", 1_000.0, "ok", check, "sampled (10% of runs)",
        passed=passed, score=1.0 if passed else 0.0, reason="ok", cost_usd=cost, prompt_version=7, model="local",
    )  # fmt: skip


class MonitorStoreConformance:
    @pytest.fixture
    def store(self, opener: Opener) -> Iterator[Store]:
        with Store(opener()) as store:
            yield store

    def test_runs_are_kept_once_and_read_in_time_order(self, store: Store) -> None:
        store.monitors.add_runs([run(i) for i in range(50)])
        store.monitors.add_runs([run(i) for i in range(40, 60)])  # a sweep re-reading its overlap
        got = store.monitors.runs("acme", "support_answer", 1_000.0, 2_000.0)
        assert [r.trace_id for r in got] == [f"t{i:05d}" for i in range(60)]
        assert got[3].values["refusal"] is False and got[7].values["refusal"] is True
        assert got[1].prompt_version == 8 and got[0].index_version == "v3"
        window = store.monitors.runs("acme", "support_answer", 1_010.0, 1_020.0)
        assert [r.ts for r in window] == [1_010.0 + i for i in range(10)]
        some = store.monitors.runs("acme", "support_answer", 0, 2_000.0, limit=5)
        assert [r.trace_id for r in some] == [f"t{i:05d}" for i in range(5)]  # by trace id, then time
        assert store.monitors.features("acme", 0) == ["support_answer"]
        assert store.monitors.tenants(0) == ["acme"]

    def test_tenants_do_not_see_each_other(self, store: Store) -> None:
        store.monitors.add_runs([run(1), run(2, tenant="globex")])
        store.monitors.add_scores([score("t00001")])
        assert [r.trace_id for r in store.monitors.runs("globex", "support_answer", 0, 1e12)] == ["t00002"]
        assert store.monitors.scores("globex", "support_answer", 0, 1e12) == []
        assert store.monitors.scored("globex", "t00001") == []
        assert store.monitors.features("initech", 0) == []

    def test_scores_are_replaced_not_doubled_and_spend_is_summed(self, store: Store) -> None:
        store.monitors.add_scores([score("a"), score("a", check="llm-rubric", cost=0.01), score("b", passed=False)])
        store.monitors.add_scores([score("a", passed=False)])  # the same run scored again
        got = store.monitors.scores("acme", "support_answer", 0, 1e12)
        assert len(got) == 3
        assert [s.passed for s in store.monitors.scored("acme", "a")] == [False, True]
        assert store.monitors.spent("acme", "support_answer", "quality", time.time() - 60) == pytest.approx(0.012)
        assert store.monitors.spent("acme", "support_answer", "quality", time.time() + 60) == 0.0
        errors = [Score("acme", "c", "quality", "grounded", "support_answer", 1_000.0, "error", "grounded", "x",
                        reason="CheckError: no sources")]  # fmt: skip
        store.monitors.add_scores(errors)
        assert store.monitors.scores("acme", "support_answer", 0, 1e12, monitor="other") == []
        failed = store.monitors.scores("acme", "support_answer", 0, 1e12, status="error")
        assert [(s.trace_id, s.passed, s.reason) for s in failed] == [("c", None, "CheckError: no sources")]

    def test_input_vectors_round_trip(self, store: Store) -> None:
        vector = np.linspace(-1, 1, 384).astype(np.float16)
        store.monitors.add_input("acme", "t1", "support_answer", 1_000.0, vector.tobytes())
        store.monitors.add_input("acme", "t1", "support_answer", 1_000.0, vector.tobytes())
        got = store.monitors.inputs("acme", "support_answer", 0, 1e12)
        assert len(got) == 1 and np.array_equal(np.frombuffer(got[0], dtype=np.float16), vector)
        assert store.monitors.inputs("globex", "support_answer", 0, 1e12) == []

    def test_one_open_alert_per_signal_under_concurrency(self, opener: Opener, store: Store) -> None:
        opened: list[bool] = []

        def one(i: int) -> None:
            with Store(opener()) as mine:
                opened.append(mine.monitors.open_alert("acme", "support_answer", "guard:grounded", f"drop {i}", {}))

        in_threads(8, one)
        assert sorted(opened) == [False] * 7 + [True]
        alerts = store.monitors.open_alerts("acme")
        assert len(alerts) == 1 and alerts[0].signal == "guard:grounded"
        assert store.monitors.open_alerts("globex") == []
        assert store.monitors.close_alert("acme", "support_answer", "guard:grounded")
        assert not store.monitors.close_alert("acme", "support_answer", "guard:grounded")
        assert store.monitors.open_alerts("acme") == []
        assert len(store.monitors.alerts("acme", since=0)) == 1
        assert store.monitors.open_alert("acme", "support_answer", "guard:grounded", "again", {})

    def test_the_cursor_moves(self, store: Store) -> None:
        assert store.monitors.cursor("traces") is None
        store.monitors.advance("traces", 123.5)
        store.monitors.advance("traces", 200.0)
        assert store.monitors.cursor("traces") == 200.0
