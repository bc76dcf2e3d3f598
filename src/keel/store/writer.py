"""A bounded, batched background writer: requests hand trace rows over and never wait for the disk
or the network.

Rows go into a lock-free buffer; the writer thread wakes on a timer, or once when a batch fills,
never once per row. (Per-row wake-ups make the writer thread fight the event loop for the GIL
on every request — a convoy that multiplied latency twentyfold under load.)

When the buffer is full the row is dropped and counted; rows that fail to write are counted too.
When the store goes away (Postgres restarting) the batch stays in the buffer, the writer reconnects
with backoff, and writes it when the store is back; only what overflows the buffer meanwhile is
dropped. Every count is exported on ``/metrics`` so a lost trace is visible, never silent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from keel.store.db import Database, StoreUnavailable
from keel.store.traces import TraceRecord, Traces

log = logging.getLogger("keel.store")


class BatchWriter:
    def __init__(
        self,
        opener: Callable[[], Database],
        *,
        queue_size: int = 10_000,
        batch_size: int = 256,
        flush_interval: float = 0.1,
        retry_max_s: float = 5.0,
        retention_days: float | None = None,
        purge_every_s: float = 600.0,
    ) -> None:
        self.opener = opener
        self.retention_days = retention_days
        self.purge_every_s = purge_every_s
        self._purged_at = 0.0
        self.purged = 0  # rows deleted by the retention setting
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_max_s = retry_max_s
        self._rows: deque[TraceRecord] = deque()
        self._wake = threading.Event()
        self._flushed = threading.Condition()
        self._generation = 0  # completed write rounds, for ``flush``
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.outages = 0  # times the store was unreachable
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="keel-writer", daemon=True)
        self._db: Database | None = None
        self._started = False

    def start(self) -> BatchWriter:
        if not self._started:
            self._db = self.opener()
            self._thread.start()
            self._started = True
        return self

    @property
    def pending(self) -> int:
        return len(self._rows)

    @property
    def rounds(self) -> int:
        """Completed write rounds: a row submitted at round r is in the store by round r + 2."""
        return self._generation

    def submit(self, rec: TraceRecord) -> bool:
        """Hand one row over without blocking. False (and counted) if it had to be dropped."""
        if len(self._rows) >= self.queue_size:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.error("trace buffer full (%d rows): %d trace rows dropped so far", self.queue_size, self.dropped)
            return False
        self._rows.append(rec)
        if len(self._rows) == self.batch_size:
            self._wake.set()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything handed over so far is written (for CLIs and tests)."""
        if not self._started:
            return not self._rows
        with self._flushed:
            target = self._generation + 2  # a round that starts after this call has finished
            self._wake.set()
            return self._flushed.wait_for(lambda: self._generation >= target or not self._thread.is_alive(), timeout)

    def close(self) -> None:
        if self._started:
            self._stop = True
            self._wake.set()
            self._thread.join(10)
            if self._db is not None:
                self._db.close()
            self._started = False

    def _run(self) -> None:
        delay = 0.0
        while True:
            self._wake.wait(delay or self.flush_interval)
            self._wake.clear()
            delay = 0.0
            while self._rows:
                batch = [self._rows.popleft() for _ in range(min(self.batch_size, len(self._rows)))]
                if not self._write(batch):
                    self._rows.extendleft(reversed(batch))  # keep them, oldest first, for the next round
                    delay = self._backoff()
                    break
            if delay == 0.0:
                self._purge()
            with self._flushed:
                if delay == 0.0:
                    self._generation += 1
                self._flushed.notify_all()
            if self._stop and (not self._rows or delay):
                if self._rows:
                    self.dropped += len(self._rows)
                    log.error("the store is unavailable at shutdown: %d trace rows dropped", len(self._rows))
                return

    def _purge(self) -> None:
        """Retention: delete traces older than ``retention_days``, a few bounded batches at a time
        (every replica may do it; each batch is a short transaction). Without retention, only the
        five-minute rollups past their two days go."""
        if self._db is None:
            return
        now = time.monotonic()
        if self._purged_at and now - self._purged_at < self.purge_every_s:
            return
        self._purged_at = now
        try:
            traces = Traces(self._db)
            if self.retention_days is None:
                traces.prune_rollups()
            else:
                self.purged += traces.purge(time.time() - self.retention_days * 86_400, max_batches=20)
        except Exception as exc:  # retention is housekeeping: it never takes the writer down
            log.warning("trace retention could not run: %s", _short(exc))

    def _backoff(self) -> float:
        self.outages += 1
        wait = min(self.retry_max_s, 0.1 * 2.0 ** min(self.outages, 6))
        with suppress(Exception):  # a dead connection may refuse to close; it is replaced below
            if self._db is not None:
                self._db.close()
        try:
            self._db = self.opener()
            log.warning("reconnected to the store")
        except Exception as exc:
            self._db = None
            log.error("the store is unavailable (%s); %d trace rows buffered", type(exc).__name__, len(self._rows))
        return wait

    def _write(self, rows: list[TraceRecord]) -> bool:
        """Write a batch; False when the store is unreachable (the caller keeps the rows)."""
        if self._db is None:
            return False
        traces = Traces(self._db)
        try:
            with self._db.transaction():
                traces.write(rows)
            self.written += len(rows)
            self.outages = 0
            return True
        except StoreUnavailable:
            return False
        except Exception:
            pass
        for row in rows:  # one bad row must not take its batch down with it
            try:
                traces.write([row])
                self.written += 1
            except StoreUnavailable:
                return False
            except Exception as exc:
                self.failed += 1
                log.error("dropped a trace row: %s", _short(exc))
        return True


def _short(exc: Any) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
