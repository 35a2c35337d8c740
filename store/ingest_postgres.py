"""Bulk ingest into PostgreSQL by binary COPY, all in the caller's transaction.

COPY cannot skip duplicates.  A batch is first copied straight into its table inside a
savepoint (the usual case: nothing is a duplicate, and that is the fastest path there
is); on a unique violation the savepoint is rolled back and the batch goes through a
per-connection temporary staging table (``ON COMMIT DELETE ROWS``: empty again after
each transaction) and ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, which counts
what was new.  Terminal states go through staging too, into one upsert.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import Connection, Cursor, postgres
from psycopg.adapt import Dumper, PyFormat
from psycopg.pq import Format

from store.ingest_prepare import (
    EVENT_COLUMNS,
    POSITION_COLUMNS,
    STATE_COLUMNS,
    dump_json,
    state_rows,
    state_upsert_sql,
)
from store.records import EventRow, IngestBatch, PositionRow, WriteResult

# binary COPY types, in the order of ingest_prepare.POSITION_COLUMNS / EVENT_COLUMNS
POSITION_TYPES = (
    "text",
    "timestamptz",
    "timestamptz",
    "float8",
    "float8",
    "float8",
    "float8",
    "float8",
    "int4",
    "float8",
    "bool",
    "text",
    "jsonb",
    "jsonb",
    "bytea",
    "int4",
)
EVENT_TYPES = ("text", "timestamptz", "text", "timestamptz", "text", "jsonb", "jsonb", "bytea")
STATE_TYPES = (
    "text",  # terminal_id
    "text",  # protocol
    "timestamptz",  # last_seen
    "timestamptz",  # fix_time
    "timestamptz",  # fix_received_at
    *("float8",) * 5,  # lat lon altitude_m speed_kmh course
    "int4",  # satellites
    "float8",  # hdop
    "bool",  # valid
    "float8",  # power_v
    "bool",  # power_cut
    "float8",  # battery_v
    "float8",  # battery_level
    "float8",  # gsm_signal
    "text",  # iccid
    "bool",  # ignition
    "bool",  # charging
    "text",  # gnss_status
    "float8",  # odometer_m
    "text",  # firmware
    "jsonb",  # attributes
    "timestamptz",  # attributes_time
    "jsonb",  # alarms
    "timestamptz",  # alarms_time
)
assert len(STATE_TYPES) == len(STATE_COLUMNS)

_STAGING = {
    "_positions_staging": (POSITION_COLUMNS, POSITION_TYPES),
    "_events_staging": (EVENT_COLUMNS, EVENT_TYPES),
    "_state_staging": (STATE_COLUMNS, STATE_TYPES),
}
_STAGING_READY = "gpsfleet_staging_ready"  # key in the pooled connection's info dict


class _JsonbTextDumper(Dumper):
    """jsonb in binary COPY from JSON already serialised (text): version byte + UTF-8."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


def _staging_ddl() -> list[str]:
    return [
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ("
        + ", ".join(f"{column} {type_}" for column, type_ in zip(columns, types, strict=True))
        + ") ON COMMIT DELETE ROWS"
        for name, (columns, types) in _STAGING.items()
    ]


def prepare_connection(conn: Connection[Any], info: dict[str, Any]) -> None:
    """Create the staging tables once per server connection, in their own transaction
    (remembered in ``info``, which the pool clears when it replaces the connection)."""
    if info.get(_STAGING_READY):
        return
    with conn.cursor() as cur:
        for statement in _staging_ddl():
            cur.execute(statement)
    conn.commit()
    info[_STAGING_READY] = True


def copy_rows(
    cur: Cursor[Any],
    table: str,
    columns: tuple[str, ...],
    types: tuple[str, ...],
    rows: list[Any],
    meanwhile: Callable[[], object] | None = None,
) -> None:
    """Binary COPY of ``rows`` into ``table`` (``types``: PostgreSQL type names per column).

    ``meanwhile`` runs after the last row is sent and before the end of the COPY is
    awaited: client work done while the server is still inserting.
    """
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(types))
        write_row = copy.write_row
        for row in rows:
            write_row(row)
        if meanwhile is not None:
            meanwhile()


def _insert_skipping_duplicates(
    cur: Cursor[Any],
    table: str,
    staging: str,
    rows: list[tuple[Any, ...]],
    meanwhile: Callable[[], object] | None = None,
) -> int:
    """Insert ``rows`` into ``table``, skipping those already there; return how many were new.

    First a plain COPY straight into the table, in a savepoint: when nothing is a
    duplicate (the usual case) that is all.  A unique violation (a retried batch, a fix
    sent twice) rolls the savepoint back and the rows go through the staging table and
    ``INSERT ... ON CONFLICT DO NOTHING``, which counts what was new.
    """
    columns, types = _STAGING[staging]
    key = _KEY[table]
    # In key order the unique index takes each terminal's rows at one place in turn
    # (about a third faster than arrival order); stable, so of two rows with one key
    # the first still wins.
    rows.sort(key=key)
    if len(set(map(key, rows))) == len(rows):
        cur.execute("SAVEPOINT bulk_copy")
        try:
            copy_rows(cur, table, columns, types, rows, meanwhile)
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT bulk_copy")
        else:
            cur.execute("RELEASE SAVEPOINT bulk_copy")
            return len(rows)
    copy_rows(cur, staging, columns, types, rows, meanwhile)
    names = ", ".join(columns)
    cur.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} ON CONFLICT DO NOTHING")
    return max(cur.rowcount, 0)


# The leading columns of each row that make up the table's unique key.
_KEY = {"positions": itemgetter(0, 1), "events": itemgetter(0, 1, 2)}


def position_rows(positions: list[PositionRow]) -> list[tuple[Any, ...]]:
    """Positions as COPY rows, in ``POSITION_COLUMNS`` order (JSON already serialised)."""
    dumps = dump_json
    return [
        (
            p.terminal_id,
            p.fix_time,
            p.received_at,
            p.lat,
            p.lon,
            p.altitude_m,
            p.speed_kmh,
            p.course,
            p.satellites,
            p.hdop,
            p.valid,
            p.protocol,
            dumps(p.alarms) if p.alarms else None,
            dumps(p.attributes) if p.attributes else None,
            p.raw,
            p.flags,
        )
        for p in positions
    ]


def event_rows(events: list[EventRow]) -> list[tuple[Any, ...]]:
    return [
        (
            e.terminal_id,
            e.time,
            e.type,
            e.received_at,
            e.protocol,
            dump_json(e.alarms),
            dump_json(e.attributes),
            e.raw,
        )
        for e in events
    ]


def copy_cursor(conn: Connection[Any]) -> Cursor[Any]:
    """A cursor whose binary COPY takes serialised JSON and bytes with the fastest dumpers."""
    cur = conn.cursor()
    cur.adapters.register_dumper(_JsonbMarker, _JsonbTextDumper)
    cur.adapters.register_dumper(_ByteaMarker, _BYTEA_DUMPER)  # the C one, not dbapi20's
    return cur


def write_batch(conn: Connection[Any], batch: IngestBatch) -> WriteResult:
    """Write the batch in the connection's current transaction (the caller commits);
    ``prepare_connection`` must have run on this connection."""
    result = WriteResult()
    states: list[tuple[Any, ...]] = []

    def prepare_states() -> None:
        if not states:
            states.extend(state_rows(batch))

    with copy_cursor(conn) as cur:
        if batch.positions:
            rows = position_rows(batch.positions)
            result.inserted = _insert_skipping_duplicates(
                cur, "positions", "_positions_staging", rows, prepare_states
            )
            result.duplicates = len(rows) - result.inserted
        if batch.events:
            result.events = _insert_skipping_duplicates(
                cur, "events", "_events_staging", event_rows(batch.events), prepare_states
            )
        prepare_states()
        if states:
            copy_rows(cur, "_state_staging", STATE_COLUMNS, STATE_TYPES, states)
            cur.execute(_UPSERT_STATE)
    return result


_UPSERT_STATE = state_upsert_sql(
    f"SELECT {', '.join(STATE_COLUMNS)} FROM _state_staging ORDER BY terminal_id",
    min_time="'-infinity'::timestamptz",
    merge_json="{old} || {new}",
)


class _JsonbMarker:
    """Never instantiated: registering a dumper under it binds the dumper to the jsonb oid only."""


class _ByteaMarker:
    """Never instantiated: binds the fastest bytes dumper to the bytea oid for COPY."""


_BYTEA_DUMPER = postgres.adapters.get_dumper(bytes, PyFormat.BINARY)
