"""The monitors' loop, run by every worker pool (``keel serve``, ``keel worker``) every five minutes
and by ``keel monitor sweep`` on demand:

1. **read**: feature runs traced since the last sweep become ``monitor_runs`` rows — their
   judge-free signals, read off the trace. Each sweep re-reads the ten minutes before its cursor
   (a trace row lands when its run ends, after runs that started later), and a run read twice is
   kept once, so replicas sweeping together agree.
2. **compare**: each feature's monitors, window against reference. A verdict that alarms opens an
   alert (one per signal, however many replicas see it at once); the replica that opened it logs
   it and sends the webhook through the signed outbox. A signal back to normal closes its alert.
   An evaluator erring on every sampled run is its own alert — never read as a quality drop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keel.config.monitors import SWEEP_S
from keel.config.settings import KeelSettings
from keel.errors import ConfigError, FeatureNotFound
from keel.features.spec import load_feature
from keel.monitor.signals import read_call, read_run
from keel.monitor.watch import GATEWAY, Status, feature_status
from keel.store import Store, TraceRecord
from keel.store.monitors import MonitorRun

log = logging.getLogger("keel.monitor")
LAG_S = 600.0
PAGE = 1000
FIRST_LOOK_S = 8 * 86_400  # a store swept for the first time: the default window and reference
CURSOR = "traces"
CALLS = "calls"  # raw gateway calls, for keel.yaml's monitors
Convert = Callable[[list[TraceRecord]], list[MonitorRun]]


class Monitors:
    def __init__(self, store: Store, settings: KeelSettings, root: Path) -> None:
        self.store, self.settings, self.root = store, settings, root
        self.opened = 0  # alerts this process opened (/metrics)
        self.sweeps = 0

    # -- 1. read -------------------------------------------------------------------------------------
    def read_traces(self, now: float | None = None) -> int:
        """Feature runs traced since the last sweep — and, for keel.yaml's monitors, raw gateway
        calls — as monitor rows; how many were read."""
        now = time.time() if now is None else now
        categories: dict[str, str | None] = {}

        def runs(page: list[TraceRecord]) -> list[MonitorRun]:
            return [read_run(r, self._category(r.feature, categories)) for r in page if r.feature]

        read = self._read(CURSOR, "feature", runs, now)
        return read + (self._read(CALLS, "chat", self._calls, now) if self.settings.monitors else 0)

    def _calls(self, page: list[TraceRecord]) -> list[MonitorRun]:
        """Raw gateway calls (not a feature run's), each under the first keel.yaml monitor whose
        models it matches, as ``gateway:<monitor>``."""
        out = []
        for r in page:
            name = next((n for n, m in self.settings.monitors.items() if m.models is None or r.alias in m.models), None)
            if r.parent is None and r.feature is None and name is not None:
                out.append(read_call(r, GATEWAY + name))
        return out

    def _read(self, cursor_name: str, operation: str, convert: Convert, now: float) -> int:
        """Page through the traces of ``operation`` past the cursor (less the lag), converting and
        keeping each page; the cursor moves to the newest read."""
        cursor = self.store.monitors.cursor(cursor_name)
        after = (now - FIRST_LOOK_S) if cursor is None else cursor - LAG_S
        newest, read = cursor or after, 0
        while True:
            page = self.store.traces.find(tenant=None, after_ts=after, operation=operation, limit=PAGE)
            found = convert(page)
            if found:
                self.store.monitors.add_runs(found)
            read += len(found)
            if page:
                after = page[-1].ts
                newest = max(newest, after)
            if len(page) < PAGE:
                break
        self.store.monitors.advance(cursor_name, newest)
        return read

    def _category(self, feature: str | None, known: dict[str, str | None]) -> str | None:
        if feature is None:
            return None
        if feature not in known:
            try:
                spec = load_feature(self.root, feature)
                known[feature] = next((m.category for m in spec.monitors.values() if m.category), None)
            except (FeatureNotFound, ConfigError):
                known[feature] = None
        return known[feature]

    # -- 2. compare ----------------------------------------------------------------------------------
    def evaluate(self, now: float | None = None) -> list[Status]:
        """Every feature with recent runs, compared; alerts opened and closed to match."""
        now = time.time() if now is None else now
        out = []
        for tenant in self.store.monitors.tenants(now - FIRST_LOOK_S):
            for feature in self.store.monitors.features(tenant, now - FIRST_LOOK_S):
                try:
                    found = feature_status(self.store, self.root, tenant, feature, now, self.settings)
                except (FeatureNotFound, ConfigError) as exc:
                    log.info("monitor: skipped %s/%s (%s)", tenant, feature, exc)
                    continue
                for status in found:
                    self._alerts(tenant, status)
                out.extend(found)
        return out

    def _alerts(self, tenant: str, status: Status) -> None:
        alarming: dict[str, tuple[str, dict[str, Any]]] = {}
        for v in status.alarms:
            alarming[v.signal.name] = (status.message(v), {**v.as_dict(), "groups": status.groups.get(v.signal.name)})
        for e in status.evaluators:
            if e.failing:
                text = (f"{status.feature}: evaluator '{e.check}' of monitor '{status.monitor}' failed on all "
                        f"{e.errors} sampled runs in the window: {e.last_error}")  # fmt: skip
                alarming[f"evaluator:{e.check}"] = (text, {"verdict": "evaluator failing", "errors": e.errors})
        quiet = {v.signal.name for v in status.verdicts if v.verdict in ("ok", "improved")}
        quiet |= {f"evaluator:{e.check}" for e in status.evaluators if e.ok > 0}
        monitors = self.store.monitors
        for name, (message, detail) in alarming.items():
            key = f"{status.monitor}/{name}"
            detail = {**detail, "monitor": status.monitor, "changes": [c.describe() for c in status.changes]}
            if monitors.open_alert(tenant, status.feature, key, message, detail):
                self.opened += 1
                log.warning("monitor alert: %s", message)
                self._announce(tenant, status, key, message, detail)
        for name in quiet - set(alarming):
            if monitors.close_alert(tenant, status.feature, f"{status.monitor}/{name}"):
                log.info("monitor: %s/%s back to normal", status.feature, name)

    def _announce(self, tenant: str, status: Status, key: str, message: str, detail: dict[str, Any]) -> None:
        url = status.spec.alert.webhook
        if url is None:
            return
        payload = {
            "type": "monitor.alert",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "data": {"feature": status.feature, "signal": key, "message": message, **detail},
        }
        give_up = self.settings.webhooks.give_up_h * 3600
        self.store.webhooks.enqueue(tenant, f"{status.feature}/{key}", url, "monitor.alert", payload, give_up_s=give_up)

    # -- the loop ------------------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> tuple[int, list[Status]]:
        read = self.read_traces(now)
        found = self.evaluate(now)
        self.sweeps += 1
        return read, found

    async def sweeper(self) -> None:
        """Read and compare every five minutes (a loop the worker pools run)."""
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await asyncio.to_thread(self.sweep)
            except Exception as exc:
                log.warning("the monitor sweeper could not run: %s", exc)
