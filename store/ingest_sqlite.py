"""Bulk ingest into SQLite: INSERT OR IGNORE of many rows per statement, in one
transaction taken with BEGIN IMMEDIATE (the write lock up front, so two writers queue
instead of failing to upgrade a read lock).  Times are integer microseconds, as
``UtcDateTime`` stores them; WAL and synchronous=NORMAL are set in ``store.db``.

A batch is cut into slices, each written by one multi-row statement (SQLite saves a step
and a reset per row).  Building a slice's values is Python and holds the GIL; stepping a
statement is SQLite's C and lets go of it.  So a prepare thread builds slice k+1 (and
folds it into the terminal states) while this thread has SQLite write slice k: the two
cores of a small gateway share the work.  The prepare thread runs one slice ahead and no
further, so it never holds the GIL for long when the writer comes back from SQLite.

Slice sizes are powers of two (a handful of statements, prepared once per connection):
the small ones first, so the writer starts at once, then full slices.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from itertools import chain
from typing import Any, NamedTuple

from store.ingest_prepare import (
    EVENT_COLUMNS,
    POSITION_COLUMNS,
    STATE_COLUMNS,
    StateBuilder,
    dump_json,
    state_upsert_sql,
)
from store.records import EventRow, IngestBatch, PositionRow, WriteResult

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# sqlite3 binds int, float, str and bytearray directly but looks every other value up in
# its adapter registry first (None and bytes: over ten times the cost of a float).  SQLite
# stores a bound NaN as NULL, so the rows carry NaN for "no value" and blobs as bytearray.
NULL = float("nan")

# Rows per statement at most: 16 position columns x 1,024 rows stays under SQLite's
# default cap of 32,766 bound variables; a build with a lower cap gets smaller slices.
MAX_SLICE_ROWS = 1024
# Below this many positions a batch is prepared in the writer's thread: handing slices to
# the prepare thread and back (tens of microseconds each) would cost more than it saves.
PREPARE_THREAD_MIN_ROWS = 256


class _Statement(NamedTuple):
    table: str
    sql: str
    values: list[Any]  # one multi-row statement's values, or the rows of ``many``
    many: bool = False


def position_rows(positions: list[PositionRow]) -> list[tuple[Any, ...]]:
    """Positions as SQLite rows, in ``POSITION_COLUMNS`` order."""
    epoch, micro, dumps, null = _EPOCH, _MICROSECOND, dump_json, NULL
    return [
        (
            p.terminal_id,
            (p.fix_time - epoch) // micro,
            (p.received_at - epoch) // micro,
            p.lat,
            p.lon,
            p.altitude_m if p.altitude_m is not None else null,
            p.speed_kmh if p.speed_kmh is not None else null,
            p.course if p.course is not None else null,
            p.satellites if p.satellites is not None else null,
            p.hdop if p.hdop is not None else null,
            1 if p.valid else 0,  # a bool, too, would go through the adapter lookup
            p.protocol,
            dumps(p.alarms) if p.alarms else null,
            dumps(p.attributes) if p.attributes else null,
            bytearray(p.raw) if p.raw is not None else null,
            p.flags,
        )
        for p in positions
    ]


def event_rows(events: list[EventRow]) -> list[tuple[Any, ...]]:
    epoch, micro, dumps = _EPOCH, _MICROSECOND, dump_json
    return [
        (
            e.terminal_id,
            (e.time - epoch) // micro,
            e.type,
            (e.received_at - epoch) // micro,
            e.protocol,
            dumps(e.alarms),
            dumps(e.attributes),
            e.raw,
        )
        for e in events
    ]


_PREPARED = "gpsfleet_ingest_ready"  # keys in the pooled connection's info dict
_VARIABLES = "gpsfleet_variables"
# The positions key index takes inserts at as many places as there are terminals in a
# batch; a page cache larger than the default 2 MB keeps those pages in memory.
CACHE_KIB = 32 * 1024
CHECKPOINT_KIB = 64 * 1024  # SQLite's default is 1,000 pages


def prepare_connection(conn: sqlite3.Connection, info: dict[str, Any]) -> None:
    """Once per connection: a larger page cache, and fewer, larger checkpoints (the commit
    that pushes the WAL past CHECKPOINT_KIB copies it back into the database file)."""
    if not info.get(_PREPARED):
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_KIB * 1024 // page_size}")
        info[_VARIABLES] = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        info[_PREPARED] = True


def write_batch(conn: sqlite3.Connection, info: dict[str, Any], batch: IngestBatch) -> WriteResult:
    """Write the batch in one transaction and commit it; roll back and raise on failure.
    ``prepare_connection`` must have run on this connection (``info`` is its dict)."""
    variables = info[_VARIABLES]
    states = StateBuilder()
    jobs: list[Callable[[], list[_Statement]]] = [
        partial(_position_statements, part, states)
        for part in _slices(batch.positions, _slice_rows(variables, len(POSITION_COLUMNS)))
    ]
    jobs.append(partial(_event_and_state_statements, batch.events, states, variables))
    result = WriteResult()
    prepared = _one_ahead(jobs, on_thread=len(batch.positions) >= PREPARE_THREAD_MIN_ROWS)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statements in prepared:
            for statement in statements:
                before = conn.total_changes
                if statement.many:
                    conn.executemany(statement.sql, statement.values)
                else:
                    conn.execute(statement.sql, statement.values)
                if statement.table == "positions":
                    result.inserted += conn.total_changes - before
                elif statement.table == "events":
                    result.events += conn.total_changes - before
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        prepared.close()
    result.duplicates = len(batch.positions) - result.inserted
    return result


def _position_statements(part: list[PositionRow], states: StateBuilder) -> list[_Statement]:
    states.add_positions(part)
    rows = position_rows(part)
    return [_Statement("positions", _insert_sql("positions", len(rows)), _flat(rows))]


def _event_and_state_statements(
    events: list[EventRow], states: StateBuilder, variables: int
) -> list[_Statement]:
    """The events, then the state of every terminal in the batch."""
    statements = [
        _Statement("events", _insert_sql("events", len(part)), _flat(part))
        for part in _slices(event_rows(events), _slice_rows(variables, len(EVENT_COLUMNS)))
    ]
    states.add_events(events)
    # One row per statement (multi-row upserts measured no faster); this runs last, with
    # the prepare thread idle, so stepping row by row costs no GIL hand-overs.
    values = [_sqlite_values(row) for row in states.rows()]
    statements.append(_Statement("terminal_state", _UPSERT_STATE, values, many=True))
    return statements


def _slice_rows(variables: int, columns: int) -> int:
    """The largest power of two of rows, up to MAX_SLICE_ROWS, whose values SQLite binds."""
    rows = MAX_SLICE_ROWS
    while rows > 1 and rows * columns > variables:
        rows //= 2
    return rows


def _slices(items: list[Any], full: int) -> Iterator[list[Any]]:
    """``items`` in order, cut into power-of-two slices: those of the remainder below
    ``full`` first (smallest first), then slices of ``full``."""
    done, size = 0, 1
    remainder = len(items) % full
    while size < full:
        if remainder & size:
            yield items[done : done + size]
            done += size
        size *= 2
    for start in range(done, len(items), full):
        yield items[start : start + full]


def _flat(rows: list[Any]) -> list[Any]:
    return list(chain.from_iterable(rows))


_INSERT_COLUMNS = {"positions": POSITION_COLUMNS, "events": EVENT_COLUMNS}


@lru_cache(maxsize=64)
def _insert_sql(table: str, rows: int) -> str:
    columns = _INSERT_COLUMNS[table]
    values = f"({', '.join('?' * len(columns))})"
    return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES {', '.join([values] * rows)}"


_UPSERT_STATE = state_upsert_sql(
    f"VALUES ({', '.join('?' * len(STATE_COLUMNS))})",
    min_time=str(-(1 << 62)),
    merge_json="json_patch({old}, {new})",
)


_prepare_thread: tuple[int, ThreadPoolExecutor] | None = None  # (process id, executor)
_prepare_thread_lock = threading.Lock()


def _one_ahead(
    jobs: list[Callable[[], list[_Statement]]], *, on_thread: bool
) -> Generator[list[_Statement], None, None]:
    """The jobs' results in order, each job run on the prepare thread while the caller
    uses the result before it; in the caller's thread unless ``on_thread``."""
    if not on_thread or len(jobs) == 1:
        for job in jobs:
            yield job()
        return
    executor = _executor()
    future = executor.submit(jobs[0])
    for job in jobs[1:]:
        done = future.result()
        future = executor.submit(job)
        yield done
    yield future.result()


def _executor() -> ThreadPoolExecutor:
    """The process's prepare thread.  A forked child inherits the executor but not its
    thread, and would wait forever on it: the child starts its own."""
    global _prepare_thread
    with _prepare_thread_lock:
        if _prepare_thread is None or _prepare_thread[0] != os.getpid():
            _prepare_thread = (
                os.getpid(),
                ThreadPoolExecutor(1, thread_name_prefix="gpsfleet-sqlite-prepare"),
            )
        return _prepare_thread[1]


_STATE_BOOLS = tuple(STATE_COLUMNS.index(c) for c in ("valid", "power_cut", "ignition", "charging"))
_STATE_TIMES = tuple(
    STATE_COLUMNS.index(c)
    for c in ("last_seen", "fix_time", "fix_received_at", "attributes_time", "alarms_time")
)


def _sqlite_values(row: tuple[Any, ...]) -> list[Any]:
    """A state row with times as integer microseconds, booleans as 0 / 1, None as NULL."""
    values: list[Any] = [NULL if value is None else value for value in row]
    for i in _STATE_BOOLS:
        if (value := values[i]) is not NULL:
            values[i] = 1 if value else 0
    for i in _STATE_TIMES:
        if (value := values[i]) is not NULL:
            values[i] = (value - _EPOCH) // _MICROSECOND
    return values
