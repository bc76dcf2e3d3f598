"""The crash journal: what a kill -9 must not lose, on this machine's disk.

Every process that serves calls appends to its own journal under ``KEEL_HOME/journal/``:

    b  a call begins: its trace id, who made it, the alias, its input at its upper bound
    h  admission holds its worst case: the reservation and the budget buckets it counts in
    e  a trace row is queued for the store (without its captured content)
    s  the call's spend is settled in the ledger

Each line is copied into a memory-mapped segment file (``MAP_SHARED``). The kernel owns those pages,
so once copied a line survives the process (kill -9, the OOM killer, a crash), though not a power
cut: there is no fsync per call. A copy into the mapping keeps the GIL; ``write(2)`` releases it, and
measured in the gateway that let the trace writer's thread cut in, at ~20 µs a line instead of ~1.

A live journal is ``flock``-ed by its process. ``dead`` finds the journals whose lock is free,
because their process died, so that start-up can settle them (``keel.gateway.recovery``).

A journal grows in segments. At ``segment_bytes`` it starts a new one and writes the lines of the
calls still in flight into it. A retired segment is deleted once the trace writer has finished two
rounds since, because every row it journaled is then in the store. A clean close deletes all of
it, unless the writer still held rows it could not write: those are recovered on the next start.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no journal (the README says so)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("keel.store")

CONTENT = ("request", "response", "steps")  # captured content stays out of the journal


@dataclass(slots=True)
class Orphan:
    """What a dead journal knew about one call."""

    trace_id: str
    begun: dict[str, Any] | None = None
    held: dict[str, Any] | None = None
    row: dict[str, Any] | None = None  # the last trace row queued for it
    settled: bool = False


@dataclass(slots=True)
class DeadJournal:
    """A journal whose process is gone, locked by the one recovering it until ``remove``."""

    instance: str
    paths: list[Path]
    orphans: dict[str, Orphan] = field(default_factory=dict)
    unreadable: int = 0  # lines that could not be parsed (a write cut by the kill)
    _fd: int = -1

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
        os.close(self._fd)


class Journal:
    def __init__(
        self,
        root: Path,
        *,
        rounds: Callable[[], int] = lambda: 0,
        segment_bytes: int = 4 << 20,
    ) -> None:
        """``rounds`` counts the trace writer's completed write rounds (``BatchWriter.rounds``)."""
        if fcntl is None:
            raise OSError("the crash journal needs fcntl (POSIX)")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.instance = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.rounds = rounds
        self.segment_bytes = segment_bytes
        self._lock = os.open(root / f"{self.instance}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._live: dict[str, list[bytes]] = {}  # a call in flight → its lines so far
        self._held: set[str] = set()
        self._segment = -1
        self._map: mmap.mmap | None = None
        self._size = 0
        self._retired: list[tuple[Path, int]] = []  # (segment, writer rounds when it was retired)
        self.lines = 0
        self._rotate()

    # -- the four events -----------------------------------------------------------------------
    def begin(self, fields: dict[str, Any]) -> None:
        self._append(fields["id"], {"k": "b", **fields}, keep=True)

    def hold(self, trace_id: str, fields: dict[str, Any]) -> None:
        self._held.add(trace_id)
        self._append(trace_id, {"k": "h", "id": trace_id, **fields}, keep=True)

    def ended(self, row: Any) -> None:
        """A trace row was handed to the writer (``row`` is a TraceRecord, already scrubbed)."""
        data = {name: getattr(row, name) for name in row.__slots__ if name not in CONTENT}
        trace_id = row.id
        if trace_id in self._held:
            self._append(trace_id, {"k": "e", "row": data}, keep=True)  # settling still to come
        else:
            self._append(trace_id, {"k": "e", "row": data}, keep=False)
            self._live.pop(trace_id, None)

    def settled(self, trace_id: str) -> None:
        self._held.discard(trace_id)
        self._append(trace_id, {"k": "s", "id": trace_id}, keep=False)
        self._live.pop(trace_id, None)

    @property
    def in_flight(self) -> int:
        return len(self._live)

    # -- files -----------------------------------------------------------------------------------
    def _append(self, trace_id: str, line: dict[str, Any], *, keep: bool) -> None:
        data = orjson.dumps(line) + b"\n"
        if keep:
            self._live.setdefault(trace_id, []).append(data)
        if self._map is None:
            return
        if self._size + len(data) > self.segment_bytes:
            self._rotate()  # carries the calls in flight, this one's earlier lines included
            if self._map is None or self._size + len(data) > self.segment_bytes:
                return
        self._map[self._size : self._size + len(data)] = data
        self.lines += 1
        self._size += len(data)
        if self._retired and self.rounds() >= self._retired[0][1] + 2:
            self._prune()

    def _path(self, segment: int) -> Path:
        return self.root / f"{self.instance}.{segment:06d}.jsonl"

    def _rotate(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
            self._retired.append((self._path(self._segment), self.rounds()))
        self._segment += 1
        carried = b"".join(b"".join(lines) for lines in self._live.values())
        size = max(self.segment_bytes, 2 * len(carried))
        try:
            fd = os.open(self._path(self._segment), os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, size)  # sparse: pages are allocated as lines reach them
                self._map = mmap.mmap(fd, size)
            finally:
                os.close(fd)
        except OSError as exc:  # a full disk must not fail calls: the journal stops, loudly
            log.error("the crash journal stopped (%s): calls are no longer crash-safe", exc)
            return
        self.segment_bytes = size
        self._map[: len(carried)] = carried
        self._size = len(carried)

    def _prune(self) -> None:
        now = self.rounds()
        while self._retired and now >= self._retired[0][1] + 2:
            self._retired.pop(0)[0].unlink(missing_ok=True)

    def close(self, *, keep: bool = False) -> None:
        """Delete the journal (``keep``: leave it for the next start to recover), then unlock."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if not keep and not self._live:
            for path in self.root.glob(f"{self.instance}.*.jsonl"):
                path.unlink(missing_ok=True)
            (self.root / f"{self.instance}.lock").unlink(missing_ok=True)
        os.close(self._lock)


def dead(root: Path) -> Iterator[DeadJournal]:
    """Every journal under ``root`` whose process is gone, read and locked for its recoverer (two
    processes starting at once never recover the same one)."""
    if fcntl is None or not root.is_dir():
        return
    for lock in sorted(root.glob("*.lock")):
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # alive: its process holds the lock
            os.close(fd)
            continue
        instance = lock.name.removesuffix(".lock")
        segments = sorted(root.glob(f"{instance}.*.jsonl"))
        journal = DeadJournal(instance, [*segments, lock], _fd=fd)
        for segment in segments:
            _read(segment, journal)
        yield journal


def _read(path: Path, journal: DeadJournal) -> None:
    with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
        written = f.read().split(b"\x00", 1)[0]  # a segment is zeros past its last line
        for raw in written.splitlines():
            try:
                line = orjson.loads(raw)
                kind = line["k"]
                trace_id = line["row"]["id"] if kind == "e" else line["id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                journal.unreadable += 1
                continue
            orphan = journal.orphans.get(trace_id) or journal.orphans.setdefault(trace_id, Orphan(trace_id))
            if kind == "b":
                orphan.begun = line
            elif kind == "h":
                orphan.held = line
            elif kind == "e":
                orphan.row = line["row"]
            elif kind == "s":
                orphan.settled = True
