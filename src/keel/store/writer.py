"""A bounded, batched background writer: requests hand rows over and never wait for the disk.

Rows go into a lock-free buffer; the writer thread wakes on a timer, or once when a batch fills,
never once per row. (Per-row wake-ups make the writer thread fight the event loop for the GIL
on every request — a convoy that multiplied latency twentyfold under load.)

When the buffer is full the row is dropped and counted; write failures are counted too. Both
are exported on ``/metrics`` so a lost trace is visible, never silent.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keel.store.sqlite import connect

log = logging.getLogger("keel.store")
Row = tuple[str, Sequence[Any]]  # (SQL, parameters)


class BatchWriter:
    def __init__(
        self, path: Path, *, queue_size: int = 10_000, batch_size: int = 256, flush_interval: float = 0.2
    ) -> None:
        self.path = path
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._rows: deque[Row] = deque()
        self._wake = threading.Event()
        self._flushed = threading.Condition()
        self._generation = 0  # completed write rounds, for ``flush``
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="keel-writer", daemon=True)
        self._conn: sqlite3.Connection | None = None
        self._started = False

    def start(self) -> BatchWriter:
        if not self._started:
            self._conn = connect(self.path)
            self._thread.start()
            self._started = True
        return self

    @property
    def pending(self) -> int:
        return len(self._rows)

    def submit(self, sql: str, params: Sequence[Any]) -> bool:
        """Hand one row over without blocking. False (and counted) if it had to be dropped."""
        if len(self._rows) >= self.queue_size:
            self.dropped += 1
            return False
        self._rows.append((sql, params))
        if len(self._rows) == self.batch_size:
            self._wake.set()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything handed over so far is on disk (for CLIs and tests)."""
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
            if self._conn is not None:
                self._conn.close()
            self._started = False

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._rows:
                batch = [self._rows.popleft() for _ in range(min(self.batch_size, len(self._rows)))]
                self._write(batch)
            with self._flushed:
                self._generation += 1
                self._flushed.notify_all()
            if self._stop and not self._rows:
                return

    def _write(self, rows: list[Row]) -> None:
        assert self._conn is not None
        try:
            self._conn.execute("BEGIN")
            for sql, params in rows:
                self._conn.execute(sql, params)
            self._conn.execute("COMMIT")
            self.written += len(rows)
        except sqlite3.Error:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            for sql, params in rows:  # one bad row must not take its batch down with it
                try:
                    self._conn.execute(sql, params)
                    self.written += 1
                except sqlite3.Error as exc:
                    self.failed += 1
                    log.error("dropped a trace row: %s", exc)
