"""PositionWriter on both backends: rows stored as given, duplicates counted, retries
idempotent, terminal_state only moving forward, flagged fixes never the latest."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

from store.db import Database, open_database
from store.ingest import PositionWriter, WriteFailed
from store.records import Flag, IngestBatch
from store.tables.positions import events, positions, terminal_state
from tests.services import free_port
from tests.store.support import T0, event, position


def state_of(database: Database, terminal_id: str) -> dict[str, Any]:
    with database.engine.connect() as conn:
        row = conn.execute(select(terminal_state).where(terminal_state.c.terminal_id == terminal_id)).one()
    return dict(row._mapping)


def count(database: Database, table: Any) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_batch_is_stored_exactly_as_given(database: Database) -> None:
    fix = position(
        "T1",
        0.25,
        alarms=["sos", "power_cut"],
        attributes={"power_v": 12.6, "cell": {"mcc": 460, "lac": 1}, "ignition": True},
        raw=b"\x78\x78\x00\xff",
        altitude_m=None,
    )
    heartbeat = event("T1", 5, attributes={"gsm_signal": 80}, raw=b"\x01")
    result = PositionWriter(database).write(IngestBatch([fix], [heartbeat]))
    assert (result.inserted, result.duplicates, result.events) == (1, 0, 1)
    with database.engine.connect() as conn:
        stored = conn.execute(select(positions)).one()
        stored_event = conn.execute(select(events)).one()
    assert stored.fix_time == fix.fix_time and stored.fix_time.microsecond == 250_000
    assert stored.received_at == fix.received_at
    assert (stored.lat, stored.lon, stored.altitude_m, stored.speed_kmh) == (fix.lat, fix.lon, None, 42.5)
    assert (stored.course, stored.satellites, stored.hdop, stored.valid) == (90.0, 9, 0.9, True)
    assert stored.alarms == ["sos", "power_cut"]
    assert stored.attributes == {"power_v": 12.6, "cell": {"mcc": 460, "lac": 1}, "ignition": True}
    assert (stored.raw, stored.flags, stored.protocol) == (b"\x78\x78\x00\xff", 0, "gt06")
    assert (stored_event.type, stored_event.time, stored_event.raw) == ("heartbeat", heartbeat.time, b"\x01")
    assert stored_event.attributes == {"gsm_signal": 80}


def test_duplicates_in_the_batch_and_in_the_table_are_counted_no_ops(database: Database) -> None:
    writer = PositionWriter(database)
    first = writer.write(IngestBatch([position("T1", 0), position("T1", 0, lat=1.0), position("T2", 0)]))
    assert (first.inserted, first.duplicates) == (2, 1)
    second = writer.write(IngestBatch([position("T1", 0), position("T1", 10), position("T2", 0)]))
    assert (second.inserted, second.duplicates) == (1, 2)
    assert count(database, positions) == 3
    with database.engine.connect() as conn:
        lat = conn.execute(select(positions.c.lat).where(positions.c.terminal_id == "T1")).scalars().first()
    assert lat != 1.0  # the first of two rows with the same key wins


def test_a_large_unsorted_batch_is_stored_whole_with_the_first_of_each_duplicate(database: Database) -> None:
    # more rows than one multi-row statement takes, terminals interleaved, duplicates
    # of rows from other statements' share of the batch
    rows = [position(f"T{n % 7}", n // 7, lat=10.0 + n * 1e-4) for n in range(1234)]
    copies = [position(r.terminal_id, (r.fix_time - T0).total_seconds(), lat=-1.0) for r in rows[::300]]
    result = PositionWriter(database).write(IngestBatch([*copies[::-1], *rows[::-1]]))
    assert (result.inserted, result.duplicates) == (1234, len(copies))
    assert count(database, positions) == 1234
    with database.engine.connect() as conn:
        lats = conn.execute(select(positions.c.lat).where(positions.c.lat < 0)).scalars().all()
    assert len(lats) == len(copies)  # the copies came first in the batch, so they won


def test_absent_values_are_stored_as_null(database: Database) -> None:
    bare = position(
        "T1", 0, altitude_m=None, speed_kmh=None, course=None, satellites=None, hdop=None, raw=None
    )
    PositionWriter(database).write(IngestBatch([bare], [event("T1", 5, raw=None)]))
    with database.engine.connect() as conn:
        stored = conn.execute(select(positions)).one()
    absent = ("altitude_m", "speed_kmh", "course", "satellites", "hdop", "alarms", "attributes", "raw")
    assert {column: getattr(stored, column) for column in absent} == dict.fromkeys(absent)
    state = state_of(database, "T1")
    assert state["altitude_m"] is None and state["power_v"] is None and state["alarms"] is None
    assert state["lat"] == bare.lat


def test_a_batch_of_many_statements_keeps_every_row_and_each_terminals_newest_state(
    database: Database,
) -> None:
    # 3,001 rows: more than one multi-row statement takes, with a remainder of odd size;
    # each terminal's newest fix and attribute values sit in the batch's last statement
    rows = [
        position(f"T{n % 3}", n, lat=n * 1e-3, attributes={"odometer_m": n, f"seen_{n % 5}": n})
        for n in range(3001)
    ]
    result = PositionWriter(database).write(IngestBatch(rows))
    assert (result.inserted, result.duplicates) == (3001, 0)
    assert count(database, positions) == 3001
    for terminal in range(3):
        newest = max(n for n in range(3001) if n % 3 == terminal)
        state = state_of(database, f"T{terminal}")
        assert (state["lat"], state["odometer_m"]) == (newest * 1e-3, float(newest))
        latest_seen = {
            f"seen_{k}": max(n for n in range(3001) if n % 3 == terminal and n % 5 == k) for k in range(5)
        }
        assert state["attributes"] == {"odometer_m": newest, **latest_seen}


def test_events_are_unique_on_terminal_time_and_type(database: Database) -> None:
    writer = PositionWriter(database)
    batch = IngestBatch(events=[event("T1", 0), event("T1", 0), event("T1", 0, type="login"), event("T2", 0)])
    assert writer.write(batch).events == 3
    assert writer.write(batch).events == 0
    assert count(database, events) == 3


def test_a_retried_batch_stores_nothing_twice_and_leaves_the_state_as_it_was(database: Database) -> None:
    writer = PositionWriter(database)
    batch = IngestBatch(
        [
            position("T1", s, attributes={"power_v": 12.0 + s / 100, "odometer_m": s})
            for s in range(0, 100, 10)
        ],
        [event("T1", 55, type="alarm", alarms=["sos"], attributes={"iccid": "8986"})],
    )
    assert writer.write(batch).inserted == 10
    before = state_of(database, "T1")
    again = writer.write(batch)
    assert (again.inserted, again.duplicates, again.events) == (0, 10, 0)
    assert state_of(database, "T1") == before
    assert count(database, positions) == 10


def test_the_state_follows_the_newest_fix_and_never_moves_backwards(database: Database) -> None:
    writer = PositionWriter(database)
    writer.write(IngestBatch([position("T1", 100, lat=10.0, attributes={"power_v": 12.5, "iccid": "A"})]))
    writer.write(IngestBatch([position("T1", 50, lat=5.0, attributes={"power_v": 9.0, "iccid": "OLD"})]))
    state = state_of(database, "T1")
    assert (state["fix_time"], state["lat"]) == (position("T1", 100).fix_time, 10.0)
    assert (state["power_v"], state["iccid"]) == (12.5, "A")
    assert state["last_seen"] == position("T1", 100).received_at
    writer.write(IngestBatch([position("T1", 200, lat=20.0, attributes={"power_v": 11.0})]))
    state = state_of(database, "T1")
    assert (state["lat"], state["power_v"], state["iccid"]) == (20.0, 11.0, "A")
    assert state["attributes"] == {"power_v": 11.0, "iccid": "A"}


def test_within_a_batch_the_latest_message_wins_whatever_the_order(database: Database) -> None:
    batch = IngestBatch(
        [
            position("T1", 30, lat=3.0, attributes={"battery_level": 30}),
            position("T1", 10, lat=1.0, attributes={"battery_level": 10, "firmware": "v1"}),
            position("T1", 20, lat=2.0),
        ],
        [event("T1", 25, type="info", attributes={"firmware": "v2", "gsm_signal": 70})],
    )
    PositionWriter(database).write(batch)
    state = state_of(database, "T1")
    assert (state["lat"], state["battery_level"], state["firmware"], state["gsm_signal"]) == (
        3.0,
        30,
        "v2",
        70,
    )


def test_flagged_fixes_are_stored_but_never_become_the_latest(database: Database) -> None:
    writer = PositionWriter(database)
    writer.write(IngestBatch([position("T1", 0, lat=1.0)]))
    result = writer.write(
        IngestBatch(
            [
                position("T1", 60, lat=0.0, lon=0.0, flags=Flag.ZERO),
                position("T1", 120, lat=89.0, flags=Flag.JUMP | Flag.FUTURE),
            ]
        )
    )
    assert result.inserted == 2
    state = state_of(database, "T1")
    assert (state["fix_time"], state["lat"]) == (T0, 1.0)
    assert state["last_seen"] == position("T1", 120).received_at  # still heard from
    with database.engine.connect() as conn:
        flags = conn.execute(select(positions.c.flags).order_by(positions.c.fix_time)).scalars().all()
    assert flags == [0, Flag.ZERO, Flag.JUMP | Flag.FUTURE]


def test_a_terminal_with_only_flagged_fixes_has_a_state_without_a_fix(database: Database) -> None:
    PositionWriter(database).write(
        IngestBatch([position("T9", 0, flags=Flag.NO_FIX, attributes={"power_v": 4})])
    )
    state = state_of(database, "T9")
    assert state["fix_time"] is None and state["lat"] is None
    assert state["power_v"] == 4.0  # the health values of a flagged message still count


def test_a_clock_running_ahead_cannot_pin_the_health_values(database: Database) -> None:
    writer = PositionWriter(database)
    future = event("T1", 0, received_at=T0, time=datetime(2030, 1, 1, tzinfo=UTC), attributes={"power_v": 1})
    writer.write(IngestBatch(events=[future]))
    writer.write(IngestBatch(events=[event("T1", 60, attributes={"power_v": 12})]))
    assert state_of(database, "T1")["power_v"] == 12.0


def test_health_values_are_typed_and_the_last_alarms_kept(database: Database) -> None:
    writer = PositionWriter(database)
    writer.write(
        IngestBatch(
            [position("T1", 0, alarms=["low_battery"])],
            [
                event(
                    "T1",
                    5,
                    type="status",
                    attributes={
                        "power_v": "12.7",
                        "power_cut": 1,
                        "battery_v": 4,
                        "battery_level": 88,
                        "gsm_signal": "strong",  # not a number: no value, and no failure
                        "ignition": False,
                        "charging": True,
                        "gnss_status": "fix",
                        "odometer_m": 1234,
                        "iccid": 89860012345678901234,
                    },
                )
            ],
        )
    )
    writer.write(IngestBatch(events=[event("T1", 10, type="heartbeat")]))
    state = state_of(database, "T1")
    assert (state["power_v"], state["power_cut"], state["battery_v"], state["battery_level"]) == (
        12.7,
        True,
        4.0,
        88,
    )
    assert (state["gsm_signal"], state["ignition"], state["charging"]) == (None, False, True)
    assert (state["gnss_status"], state["odometer_m"], state["iccid"]) == (
        "fix",
        1234.0,
        "89860012345678901234",
    )
    assert state["attributes"]["gsm_signal"] == "strong"
    assert state["alarms"] == ["low_battery"] and state["alarms_time"] == T0
    assert state["last_seen"] == event("T1", 10).received_at


def test_a_nul_character_from_a_device_does_not_fail_the_batch(database: Database) -> None:
    batch = IngestBatch([position("T1", 0, attributes={"firmware": "v1\x00\x00", "k\x00": 1})])
    assert PositionWriter(database).write(batch).inserted == 1
    assert state_of(database, "T1")["firmware"] == "v1"


def test_an_empty_batch_writes_nothing(database: Database) -> None:
    assert PositionWriter(database).write(IngestBatch()).inserted == 0
    assert count(database, terminal_state) == 0


def test_a_batch_the_database_refuses_is_rolled_back_whole(database: Database) -> None:
    writer = PositionWriter(database)
    naive = position("T2", 0, fix_time=datetime(2026, 1, 1))  # a naive time is a caller's bug
    with pytest.raises(WriteFailed) as failure:
        writer.write(IngestBatch([position("T1", 0), naive]))
    assert failure.value.retryable is False
    assert count(database, positions) == 0
    assert writer.write(IngestBatch([position("T1", 0)])).inserted == 1  # the writer goes on


def test_a_bad_row_deep_in_a_large_batch_rolls_back_the_whole_batch(database: Database) -> None:
    # on SQLite the last slices are built on the prepare thread while the first are written
    rows = [position(f"T{n % 5}", n) for n in range(2999)]
    rows.append(position("T9", 0, fix_time=datetime(2026, 1, 1)))  # naive: a caller's bug
    writer = PositionWriter(database)
    with pytest.raises(WriteFailed) as failure:
        writer.write(IngestBatch(rows))
    assert failure.value.retryable is False
    assert count(database, positions) == 0 and count(database, terminal_state) == 0
    assert writer.write(IngestBatch(rows[:-1])).inserted == 2999  # the writer goes on


def test_a_batch_cut_off_by_a_lost_connection_is_stored_once_when_retried(pg_url: str) -> None:
    database = open_database(pg_url)
    writer = PositionWriter(database)
    writer.write(IngestBatch([position("T1", 0)]))
    batch = IngestBatch([position("T1", s) for s in range(10, 60, 10)], [event("T1", 15)])
    failures: list[WriteFailed] = []

    def attempt() -> None:
        try:
            writer.write(batch)
        except WriteFailed as exc:
            failures.append(exc)

    with psycopg.connect(pg_url, autocommit=True) as admin, psycopg.connect(pg_url) as blocker:
        blocker.execute("SELECT * FROM terminal_state WHERE terminal_id = 'T1' FOR UPDATE")
        thread = threading.Thread(target=attempt)
        thread.start()
        waiting = None
        for _ in range(3000):  # the writer has copied the rows and waits for the state row
            waiting = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting:
                break
            time.sleep(0.01)
        assert waiting, "the writer never reached the locked state row"
        admin.execute("SELECT pg_terminate_backend(%s)", waiting)
        thread.join(30)
        blocker.rollback()
    assert failures and failures[0].retryable
    assert count(database, positions) == 1 and count(database, events) == 0  # rolled back whole
    retried = writer.write(batch)
    assert (retried.inserted, retried.duplicates, retried.events) == (5, 0, 1)
    assert state_of(database, "T1")["fix_time"] == position("T1", 50).fix_time
    again = writer.write(batch)  # the acknowledgement was lost too: everything is a duplicate
    assert (again.inserted, again.duplicates, again.events) == (0, 5, 0)
    database.dispose()


def test_concurrent_writers_keep_every_row_and_the_newest_state(database: Database) -> None:
    """One writer per thread, the same terminals: nothing lost, nothing doubled, and each
    terminal's state ends on its newest fix whichever transaction committed last."""
    failures: list[BaseException] = []

    def work(thread: int) -> None:
        writer = PositionWriter(database)
        try:
            for round_ in range(5):
                seconds = [(round_ * 4 + thread) * 10 + k for k in range(5)]
                batch = IngestBatch([position(f"T{n}", s, lat=float(s)) for n in range(8) for s in seconds])
                writer.write(batch)
        except BaseException as exc:  # reported below; a thread cannot fail the test itself
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert count(database, positions) == 4 * 5 * 8 * 5
    newest = max((round_ * 4 + thread) * 10 + 4 for round_ in range(5) for thread in range(4))
    for n in range(8):
        assert state_of(database, f"T{n}")["lat"] == float(newest)


def test_an_unreachable_server_is_a_retryable_failure_naming_the_database() -> None:
    database = Database(f"postgresql://gpsfleet:secret@127.0.0.1:{free_port()}/nowhere")
    try:
        with pytest.raises(WriteFailed) as failure:
            PositionWriter(database).write(IngestBatch([position("T1", 0)]))
    finally:
        database.dispose()
    assert failure.value.retryable
    assert "gpsfleet:***@127.0.0.1" in str(failure.value) and "secret" not in str(failure.value)
