"""The batch writer: group commit into the store from one thread, or fsync to the spool.

Sessions ``submit`` one ``WorkItem`` per frame from the event loop.  The writer thread
takes everything queued (up to ``batch_max_rows``) as soon as it is free — group commit:
no flush timer, so a terminal waiting for its acknowledgement never waits for one — and
writes it in one transaction through ``store.ingest.PositionWriter``.  When the database
fails the batch goes to the spool (fsynced) instead.  Only then are the items handed back
to the loop as durable, in submission order, so per-terminal order is kept end to end.

While the spool holds anything, new batches are appended behind it and the spool drains
oldest first; a drained batch that the database refuses although it answers is written
row by row and a row it still refuses is set aside in ``rejected.jsonl`` (logged, counted).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway import metrics
from gateway.spool import Spool, SpoolFull, SpoolRecord, decode_batch, encode_batch
from store.records import EventRow, IngestBatch, PositionRow, WriteResult

log = logging.getLogger(__name__)

WriteFn = Callable[[IngestBatch], WriteResult]
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
DRAIN_RECORDS = 64


class WorkItem:
    """One frame's rows and whoever waits for them to be durable (a plain class: one is
    made per frame, and a dataclass with default factories costs twice as much)."""

    __slots__ = ("positions", "events", "on_durable")

    def __init__(
        self,
        positions: list[PositionRow] | None = None,
        events: list[EventRow] | None = None,
        on_durable: Callable[[], None] | None = None,
    ) -> None:
        self.positions = positions if positions is not None else []
        self.events = events if events is not None else []
        self.on_durable = on_durable

    @property
    def rows(self) -> int:
        return len(self.positions) + len(self.events)


DurableCallback = Callable[[list[WorkItem], IngestBatch | None], None]


class BatchWriter:
    """Owns the writer thread, its bounded queue and the spool."""

    def __init__(
        self,
        make_writer: Callable[[], WriteFn],
        spool: Spool,
        loop: asyncio.AbstractEventLoop,
        on_durable: DurableCallback,
        *,
        batch_max_rows: int,
        queue_max_frames: int,
        batch_max_delay_ms: float = 0.0,
        probe: Callable[[], None] | None = None,
    ) -> None:
        self._make_writer = make_writer
        self.spool = spool
        self._loop = loop
        self._on_durable = on_durable
        self.batch_max_rows = batch_max_rows
        self.queue_max_frames = queue_max_frames
        self._delay_s = batch_max_delay_ms / 1000.0
        self._probe = probe
        self._queue: deque[WorkItem] = deque()
        self._condition = threading.Condition()
        self._stopping = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self._write: WriteFn | None = None
        self.database_ok = True
        self.last_error: str | None = None
        self.spool_full = False
        self._retry_at = 0.0
        self._backoff = RETRY_MIN_S
        self.committed_batches = 0
        # Label children bound once, not looked up (under the metric's lock) per batch.
        self._seconds = {target: metrics.BATCH_SECONDS.labels(target) for target in ("database", "spool")}
        self._stored = {
            target: metrics.ROWS_STORED.labels(target) for target in ("database", "spool", "drained")
        }

    # ------------------------------------------------------------------ loop side

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-writer", daemon=True)
        self._thread.start()

    def submit(self, item: WorkItem) -> bool:
        """Queue the item; True when reading should pause (``overloaded``)."""
        # deque.append is atomic; the lock is only needed to wake an idle writer.  A writer
        # that is busy (or about to be) looks at the queue under the lock after it clears
        # ``_busy``, so an item appended before we read ``_busy`` is never missed.
        queue = self._queue
        queue.append(item)
        if not self._busy:
            with self._condition:
                self._condition.notify()
        return len(queue) >= self.queue_max_frames or self.spool_full

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def overloaded(self) -> bool:
        """Reading should pause: the queue is at its bound or the spool is full."""
        return len(self._queue) >= self.queue_max_frames or self.spool_full

    @property
    def relieved(self) -> bool:
        """Reading may resume: the queue is under half its bound and the spool has room."""
        return len(self._queue) < self.queue_max_frames // 2 and not self.spool_full

    def idle(self) -> bool:
        return not self._queue and not self._busy

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then end the thread (blocking: call it in an executor)."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("writer did not finish within %.0f s; %d frames still queued", timeout, self.queued)
        self.spool.close()

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            if items:
                batch = _merge(items)
                committed = self._store(batch)
                self._hand_back(items, batch if committed else None)
            if not self.spool.empty and time.monotonic() >= self._retry_at:
                self._drain()

    def _take(self) -> list[WorkItem] | None:
        with self._condition:
            self._busy = False
            while not self._queue:
                if self._stopping:
                    return None
                if not self.spool.empty:
                    wait = self._retry_at - time.monotonic()
                    if wait <= 0:
                        self._busy = True
                        return []
                    self._condition.wait(wait)
                else:
                    self._condition.wait()
            self._busy = True
        if self._delay_s:
            time.sleep(self._delay_s)
        items: list[WorkItem] = []
        rows = 0
        with self._condition:
            queue, most = self._queue, self.batch_max_rows
            while queue and rows < most:
                item = queue.popleft()
                items.append(item)
                rows += len(item.positions) + len(item.events)
        metrics.QUEUE_FRAMES.set(len(self._queue))
        return items

    def _store(self, batch: IngestBatch) -> bool:
        """Make the batch durable; True when it went to the database, False to the spool.
        Blocks (retrying) rather than drop anything when both are unavailable."""
        if not len(batch):
            return True
        while True:
            if self.spool.empty and time.monotonic() >= self._retry_at and self._try_write(batch):
                return True
            started = time.perf_counter()
            payload = encode_batch(batch)
            try:
                self.spool.append(payload)
            except SpoolFull as exc:
                if not self.spool_full:
                    log.error("spool is full (%s): reading paused until the database takes it", exc)
                self.spool_full = True
                self._wake_loop()
                if time.monotonic() >= self._retry_at:
                    self._drain()
                else:
                    time.sleep(min(0.5, max(0.01, self._retry_at - time.monotonic())))
                continue
            self._seconds["spool"].observe(time.perf_counter() - started)
            self._stored["spool"].inc(len(batch))
            return False

    def _try_write(self, batch: IngestBatch) -> bool:
        started = time.perf_counter()
        try:
            if self._write is None:
                self._write = self._make_writer()
            result = self._write(batch)
        except Exception as exc:
            self._failed(exc)
            return False
        self._succeeded()
        self._seconds["database"].observe(time.perf_counter() - started)
        metrics.BATCH_ROWS.observe(len(batch))
        self._stored["database"].inc(len(batch))
        if result.duplicates:
            metrics.DUPLICATES.inc(result.duplicates)
        self.committed_batches += 1
        return True

    def _failed(self, exc: Exception) -> None:
        metrics.WRITE_FAILURES.inc()
        first = str(exc).strip().splitlines()
        self.last_error = f"{type(exc).__name__}: {first[0] if first else ''}"
        if self.database_ok:
            log.error("database write failed, spooling until it is back: %s", self.last_error)
        self.database_ok = False
        self._write = None  # a fresh writer (and connection) next time
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(RETRY_MAX_S, self._backoff * 2)

    def _succeeded(self) -> None:
        if not self.database_ok:
            log.warning("database is back")
        self.database_ok = True
        self.last_error = None
        self._backoff = RETRY_MIN_S
        self._retry_at = 0.0

    def _drain(self) -> None:
        """Write the oldest spooled batches to the database, in order, until it is empty
        or the database fails again; new frames queued meanwhile wait behind."""
        while not self.spool.empty:
            records = self.spool.peek(DRAIN_RECORDS)
            if not records:
                return
            batches = [decode_batch(r.payload) for r in records]
            merged = IngestBatch(
                positions=[p for b in batches for p in b.positions],
                events=[e for b in batches for e in b.events],
            )
            written = self._try_write(merged) or (
                self._database_answers() and self._write_one_by_one(records)
            )
            if not written:
                return
            self._stored["drained"].inc(len(merged))
            self.spool.consume(records)
            if self.spool_full and (self.spool.empty or self.spool.size_bytes <= self.spool.max_bytes // 2):
                self.spool_full = False
                self._wake_loop()
            self._call_hooks(merged)
            if self.spool.empty:
                log.warning("spool drained")
            if self._queue:
                return  # acknowledge new frames (behind the spool) before the next chunk

    def _database_answers(self) -> bool:
        if self._probe is None:
            return False
        try:
            self._probe()
        except Exception:
            return False
        return True

    def _write_one_by_one(self, records: list[SpoolRecord]) -> bool:
        """Find the rows the database refuses; False when it stopped answering meanwhile."""
        for record in records:
            batch = decode_batch(record.payload)
            rows: list[IngestBatch] = [IngestBatch(positions=[p]) for p in batch.positions]
            rows += [IngestBatch(events=[e]) for e in batch.events]
            for row in rows:
                if self._try_write(row):
                    continue
                if not self._database_answers():
                    return False
                self._reject(row)
        self._succeeded()
        return True

    def _reject(self, row: IngestBatch) -> None:
        path = self.spool.directory / "rejected.jsonl"
        with open(path, "ab") as handle:
            handle.write(encode_batch(row) + b"\n")
        metrics.SPOOL_CORRUPT.inc()
        log.error(
            "the database refuses a spooled row although it answers; kept in %s: %s", path, self.last_error
        )

    # ------------------------------------------------------------------ back to the loop

    def _hand_back(self, items: list[WorkItem], committed: IngestBatch | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._on_durable, items, committed)
        except RuntimeError:  # the loop is closed: the process is ending
            log.warning("event loop closed; %d durable frames could not be acknowledged", len(items))

    def _call_hooks(self, batch: IngestBatch) -> None:
        self._hand_back([], batch)

    def _wake_loop(self) -> None:
        self._hand_back([], None)


def _merge(items: list[WorkItem]) -> IngestBatch:
    if len(items) == 1:
        return IngestBatch(positions=list(items[0].positions), events=list(items[0].events))
    batch = IngestBatch()
    for item in items:
        batch.positions.extend(item.positions)
        batch.events.extend(item.events)
    return batch


def describe(writer: BatchWriter) -> dict[str, Any]:
    """The writer's state for /health and the status endpoint."""
    return {
        "database_ok": writer.database_ok,
        "last_error": writer.last_error,
        "queued_frames": writer.queued,
        "spool_records": writer.spool.records,
        "spool_bytes": writer.spool.size_bytes,
        "spool_max_bytes": writer.spool.max_bytes,
        "spool_full": writer.spool_full,
    }
