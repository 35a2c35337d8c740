"""Bulk ingest into SQLite: prebuilt tuples, ``executemany`` INSERT OR IGNORE, one
transaction taken with BEGIN IMMEDIATE (the write lock up front, so two writers queue
instead of failing to upgrade a read lock).  Times are integer microseconds, as
``UtcDateTime`` stores them; WAL and synchronous=NORMAL are set in ``store.db``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
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


_INSERT_POSITIONS = _insert_or_ignore("positions", POSITION_COLUMNS)
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


_PREPARED = "gpsfleet_ingest_ready"  # key in the pooled connection's info dict
# The positions key index takes inserts at as many places as there are terminals in a
# batch; a page cache larger than the default 2 MB keeps those pages in memory.
CACHE_KIB = 32 * 1024


def prepare_connection(conn: sqlite3.Connection, info: dict[str, Any]) -> None:
    """Once per connection: the larger page cache for bulk writes."""
    if not info.get(_PREPARED):
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        info[_PREPARED] = True


def write_batch(conn: sqlite3.Connection, batch: IngestBatch) -> WriteResult:
    """Write the batch in one transaction and commit it; roll back and raise on failure."""
    result = WriteResult()
    conn.execute("BEGIN IMMEDIATE")
    try:
        if batch.positions:
            before = conn.total_changes
            conn.executemany(_INSERT_POSITIONS, position_rows(batch.positions))
            result.inserted = conn.total_changes - before
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
