"""Bulk ingest into SQLite: prebuilt tuples sorted by key, INSERT OR IGNORE of many rows
per statement, one transaction taken with BEGIN IMMEDIATE (the write lock up front, so two
writers queue instead of failing to upgrade a read lock).  Times are integer
microseconds, as ``UtcDateTime`` stores them; WAL and synchronous=NORMAL are set in
``store.db``.

Sorting by (terminal, fix time) makes the key index take each terminal's rows at one
place in turn; one statement of many rows saves SQLite a step and a reset per row.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import itemgetter
from typing import Any

from store.ingest_prepare import (
    EVENT_COLUMNS,
    POSITION_COLUMNS,
    STATE_COLUMNS,
    dump_json,
    state_rows,
    state_upsert_sql,
)
from store.records import EventRow, IngestBatch, PositionRow, WriteResult

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _insert_or_ignore(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _insert_many(table: str, columns: tuple[str, ...], rows: int) -> str:
    values = f"({', '.join('?' * len(columns))})"
    return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES {', '.join([values] * rows)}"


_INSERT_POSITIONS = _insert_or_ignore("positions", POSITION_COLUMNS)
# Rows per multi-row statement: 16 columns x 500 rows, under SQLite's default cap of
# 32,766 bound variables (a build with a lower cap gets one row per statement).
CHUNK_ROWS = 500
_INSERT_POSITION_CHUNK = _insert_many("positions", POSITION_COLUMNS, CHUNK_ROWS)
_BY_KEY = itemgetter(0, 1)
_INSERT_EVENTS = _insert_or_ignore("events", EVENT_COLUMNS)
_UPSERT_STATE = state_upsert_sql(
    f"VALUES ({', '.join('?' * len(STATE_COLUMNS))})",
    min_time=str(-(1 << 62)),
    merge_json="json_patch({old}, {new})",
)


def position_rows(positions: list[PositionRow]) -> list[tuple[Any, ...]]:
    """Positions as SQLite rows, in ``POSITION_COLUMNS`` order."""
    epoch, micro, dumps = _EPOCH, _MICROSECOND, dump_json
    return [
        (
            p.terminal_id,
            (p.fix_time - epoch) // micro,
            (p.received_at - epoch) // micro,
            p.lat,
            p.lon,
            p.altitude_m,
            p.speed_kmh,
            p.course,
            p.satellites,
            p.hdop,
            1 if p.valid else 0,  # sqlite3 binds a bool through its slow adapter path
            p.protocol,
            dumps(p.alarms) if p.alarms else None,
            dumps(p.attributes) if p.attributes else None,
            p.raw,
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
_MULTI_ROW = "gpsfleet_multi_row"
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
        variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        info[_MULTI_ROW] = variables >= CHUNK_ROWS * len(POSITION_COLUMNS)
        info[_PREPARED] = True


def insert_positions(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], multi_row: bool) -> int:
    """INSERT OR IGNORE the rows (sorted here by key), CHUNK_ROWS per statement when
    ``multi_row``; return how many were new."""
    rows.sort(key=_BY_KEY)  # stable: of two rows with one key, the first still wins
    before = conn.total_changes
    full = len(rows) - len(rows) % CHUNK_ROWS if multi_row else 0
    for start in range(0, full, CHUNK_ROWS):
        conn.execute(_INSERT_POSITION_CHUNK, list(chain.from_iterable(rows[start : start + CHUNK_ROWS])))
    if full < len(rows):
        conn.executemany(_INSERT_POSITIONS, rows[full:])
    return conn.total_changes - before


def write_batch(conn: sqlite3.Connection, info: dict[str, Any], batch: IngestBatch) -> WriteResult:
    """Write the batch in one transaction and commit it; roll back and raise on failure.
    ``prepare_connection`` must have run on this connection (``info`` is its dict)."""
    result = WriteResult()
    conn.execute("BEGIN IMMEDIATE")
    try:
        if batch.positions:
            result.inserted = insert_positions(conn, position_rows(batch.positions), info[_MULTI_ROW])
            result.duplicates = len(batch.positions) - result.inserted
        if batch.events:
            before = conn.total_changes
            conn.executemany(_INSERT_EVENTS, event_rows(batch.events))
            result.events = conn.total_changes - before
        conn.executemany(_UPSERT_STATE, [_sqlite_values(row) for row in state_rows(batch)])
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return result


_STATE_BOOLS = tuple(STATE_COLUMNS.index(c) for c in ("valid", "power_cut", "ignition", "charging"))
_STATE_TIMES = tuple(
    STATE_COLUMNS.index(c)
    for c in ("last_seen", "fix_time", "fix_received_at", "attributes_time", "alarms_time")
)


def _sqlite_values(row: tuple[Any, ...]) -> list[Any]:
    """A state row with times as integer microseconds and booleans as 0 / 1."""
    values = list(row)
    for i in _STATE_BOOLS:
        if (value := values[i]) is not None:
            values[i] = 1 if value else 0
    for i in _STATE_TIMES:
        if (value := values[i]) is not None:
            values[i] = (value - _EPOCH) // _MICROSECOND
    return values
