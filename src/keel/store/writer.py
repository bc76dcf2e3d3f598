"""A bounded, batched background writer: requests hand rows over and never wait for the disk.

When the queue is full the row is dropped and counted; write failures are counted too. Both
counts are exported on ``/metrics`` so a lost trace is visible, never silent.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
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
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._queue: queue.Queue[Row | Callable[[], None] | None] = queue.Queue(maxsize=queue_size)
        self.written = 0
        self.dropped = 0
        self.failed = 0
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
        return self._queue.qsize()

    def submit(self, sql: str, params: Sequence[Any]) -> bool:
        """Queue one row without blocking. False (and counted) if it had to be dropped."""
        try:
            self._queue.put_nowait((sql, params))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far is on disk (for CLIs and tests)."""
        if not self._started:
            return True
        done = threading.Event()
        try:
            self._queue.put(done.set, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self) -> None:
        if self._started:
            self.flush()
            self._queue.put(None)
            self._thread.join(10)
            if self._conn is not None:
                self._conn.close()
            self._started = False

    def _run(self) -> None:
        assert self._conn is not None
        while True:
            first = self._queue.get()
            batch = [first]
            deadline = time.monotonic() + self.flush_interval
            while len(batch) < self.batch_size and first is not None and not callable(first):
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
                if batch[-1] is None or callable(batch[-1]):
                    break
            rows = [item for item in batch if isinstance(item, tuple)]
            if rows:
                self._write(rows)
            for item in batch:
                if callable(item):
                    item()
            if any(item is None for item in batch):
                return

    def _write(self, rows: list[Row]) -> None:
        assert self._conn is not None
        try:
            self._conn.execute("BEGIN")
            for sql, params in rows:
                self._conn.execute(sql, params)
            self._conn.execute("COMMIT")
            self.written += len(rows)
        except sqlite3.Error as exc:
            self._conn.execute("ROLLBACK") if self._conn.in_transaction else None
            self.failed += len(rows)
            log.error("dropped %d trace rows: %s", len(rows), exc)
