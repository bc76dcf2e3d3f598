"""The references a window is compared with: the span before it, a labelled eval run (its cases'
checks, latency and answer length), pinned dates; and what each says when it holds nothing."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from keel.config.monitors import parse_reference
from keel.evals.results import CaseResult, CheckResult, EvalRun, save_run, summarise
from keel.features.monitoring import MonitorSpec
from keel.features.spec import FeatureSpec
from keel.monitor.watch import monitor_status
from keel.store import Store
from keel.store.monitors import MonitorRun, Score


def _window(store: Store, now: float, *, passed: float) -> None:
    runs, scores = [], []
    for i in range(100):
        trace = f"w{i:03d}"
        runs.append(MonitorRun("acme", trace, "support", now - 1800 + i, {"answer_chars": 40}, prompt_version=3))
        scores.append(Score("acme", trace, "quality", "grounded", "support", now - 1800 + i, "ok", "grounded",
                            "sampled", passed=i < passed * 100, score=1.0))  # fmt: skip
    store.monitors.add_runs(runs)
    store.monitors.add_scores(scores)


def test_a_labelled_eval_run_is_a_reference(tmp_path: Path) -> None:
    now = time.time()
    with Store.at(tmp_path / "keel.db") as store:
        cases = [CaseResult(f"c{i}", passed=True, output="x" * 40, latency_ms=100.0,
                            checks=[CheckResult("grounded", True, 1.0, "ok")]) for i in range(60)]  # fmt: skip
        save_run(store.evals, EvalRun("r1", "support", "support", now - 86_400, cases, summarise(cases), label="main"),
                 "acme")  # fmt: skip
        _window(store, now, passed=0.6)
        spec = FeatureSpec(name="support", prompt="support", evals="evals/support.yaml")
        watch = MonitorSpec(checks=["grounded"], window="1h", reference="eval-run:main", alert={"min_samples": 30})
        status = monitor_status(store, spec, "quality", watch, "acme", now)
        verdict = next(v for v in status.verdicts if v.signal.name == "check:grounded")
        assert (verdict.reference, verdict.current, verdict.n_reference, verdict.verdict) == (1.0, 0.6, 60, "drop")
        assert status.reference == "eval run 'main'"
        missing = MonitorSpec(checks=["grounded"], window="1h", reference="eval-run:nope")
        notes = monitor_status(store, spec, "quality", missing, "acme", now).notes
        assert any("no eval run 'nope'" in n for n in notes)


def test_pinned_dates_and_an_empty_reference(tmp_path: Path) -> None:
    now = time.time()
    ref = parse_reference("pinned:2026-11-20..2026-11-27")
    assert ref.start == dt.datetime(2026, 11, 20, tzinfo=dt.UTC).timestamp()
    assert ref.end == dt.datetime(2026, 11, 28, tzinfo=dt.UTC).timestamp()  # the last day is whole
    assert ref.describe() == "pinned 2026-11-20..2026-11-27"
    with Store.at(tmp_path / "keel.db") as store:
        _window(store, now, passed=0.6)
        spec = FeatureSpec(name="support", prompt="support")
        watch = MonitorSpec(checks=["grounded"], window="1h", reference="pinned:2026-11-20..2026-11-27")
        status = monitor_status(store, spec, "quality", watch, "acme", now)
        assert {v.verdict for v in status.verdicts} == {"no reference"} and not status.alarms
        assert any("has no runs: no verdicts until it does" in n for n in status.notes)


@pytest.mark.parametrize("text", ["eval-run:", "pinned:2026-13-01", "pinned:2026-11-27..2026-11-20", "7x"])
def test_bad_references_say_what_is_allowed(text: str) -> None:
    with pytest.raises(ValueError, match=r"eval-run|pinned"):
        parse_reference(text)
