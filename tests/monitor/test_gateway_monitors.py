"""keel.yaml's ``monitors:`` watch raw gateway calls (not a feature's): their errors, latency, cost
and answers, compared like a feature's, under ``gateway:<name>``; bad settings are refused at load."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from keel.errors import ConfigError
from keel.monitor.sweeper import Monitors
from keel.store import Store, TraceRecord
from tests.conftest import make_settings

CONFIG = (
    "deployments:\n  d: {provider: openai, model: gpt-4o-mini, base_url: 'http://127.0.0.1:9'}\n"
    "models:\n  chat: {deployments: [d]}\n  other: {deployments: [d]}\n"
)


def _call(ts: float, *, alias: str = "chat", failed: bool = False, parent: str | None = None) -> TraceRecord:
    return TraceRecord(
        id=uuid.uuid4().hex, ts=ts, operation="chat", tenant="acme", alias=alias, model="gpt-4o-mini",
        status="error" if failed else "ok", latency_ms=120.0, cost_usd=0.0002, parent=parent,
        request=[{"role": "user", "content": "Where is my parcel?"}], response=None if failed else "It ships today.",
    )  # fmt: skip


def test_raw_calls_are_watched_and_a_rise_in_errors_alerts(tmp_path: Path) -> None:
    settings = make_settings(
        CONFIG + "monitors:\n  raw: {models: [chat], window: 1h, reference: 1h, alert: {min_samples: 50}}\n"
    )
    now = time.time()
    with Store.at(tmp_path / "keel.db") as store:
        before = [_call(now - 5400 + i * 10) for i in range(100)]
        during = [_call(now - 1800 + i * 10, failed=i % 4 == 0) for i in range(100)]
        others = [_call(now - 1000, alias="other"), _call(now - 900, parent="a-feature-run")]  # not watched
        store.traces.write(before + during + others)
        read, found = Monitors(store, settings, tmp_path).sweep(now)
        assert read == 200
        status = next(s for s in found if s.feature == "gateway:raw")
        verdicts = {v.signal.name: v for v in status.verdicts}
        assert verdicts["error"].verdict == "drop" and verdicts["error"].current == 0.25
        assert verdicts["answer_chars"].n == 75 and verdicts["input_chars"].verdict == "ok"
        alert = store.monitors.open_alerts("acme", "gateway:raw")[0]
        assert alert.signal == "raw/error" and alert.message.startswith("gateway:raw: error rate 0.00 → 0.25 (+25 pts")


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("monitors:\n  raw: {models: [chta]}\n", "monitors.raw.models.0: unknown model 'chta'; did you mean 'chat'?"),
        ("monitors:\n  raw: {reference: eval-run:main}\n", "raw gateway traffic has no eval runs"),
        ("monitors:\n  raw: {window: soon}\n", "window takes a span like 1d"),
        ("monitors:\n  raw: {checks: [grounded]}\n", "monitors.raw.checks: unknown key"),
    ],
)
def test_bad_gateway_monitors_are_refused_at_load(yaml: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_settings(CONFIG + yaml)
    assert message in str(raised.value)
