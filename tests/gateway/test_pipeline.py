"""The pipeline's pure stages: plausibility flags and rows from messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.messages import Message, MessageType
from gateway.pipeline import Plausibility, needs_durable_ack, to_rows
from store.records import Flag

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_plausible_fixes_carry_no_flag() -> None:
    check = Plausibility(max_future_s=300, max_speed_kmh=1000).check
    assert check("T", NOW - timedelta(seconds=20), NOW, True, 31.0, 121.0) == 0
    assert check("T", NOW - timedelta(seconds=10), NOW, True, 31.001, 121.001) == 0


def test_future_invalid_and_zero_fixes_are_flagged() -> None:
    check = Plausibility(max_future_s=300, max_speed_kmh=1000).check
    assert check("T", NOW + timedelta(hours=1), NOW, True, 31.0, 121.0) == Flag.FUTURE
    assert check("T", NOW, NOW, False, 31.0, 121.0) == Flag.NO_FIX
    assert check("T", NOW, NOW, True, 0.0, 0.0) == Flag.ZERO
    assert check("T", NOW, NOW, True, 95.0, 10.0) == Flag.ZERO


def test_an_impossible_jump_is_flagged_and_a_confirmed_one_becomes_the_new_anchor() -> None:
    check = Plausibility(max_future_s=300, max_speed_kmh=1000).check
    assert check("T", NOW, NOW, True, 31.0, 121.0) == 0
    assert check("T", NOW + timedelta(seconds=10), NOW, True, 40.0, 100.0) == Flag.JUMP  # 2000 km in 10 s
    assert check("T", NOW + timedelta(seconds=20), NOW, True, 31.0002, 121.0002) == 0  # back on track
    # Two consistent fixes far away: the old anchor was the wrong one.
    assert check("T", NOW + timedelta(seconds=30), NOW, True, 45.0, 90.0) == Flag.JUMP
    assert check("T", NOW + timedelta(seconds=40), NOW, True, 45.0001, 90.0001) == 0
    assert check("T", NOW + timedelta(seconds=50), NOW, True, 45.0002, 90.0002) == 0


def test_an_older_fix_than_the_latest_is_stale() -> None:
    check = Plausibility(max_future_s=300, max_speed_kmh=1000).check
    assert check("T", NOW, NOW, True, 31.0, 121.0) == 0
    assert check("T", NOW - timedelta(hours=2), NOW, True, 35.0, 121.0) == Flag.STALE


def test_rows_positions_events_and_the_raw_frame_once() -> None:
    fix = Message(MessageType.ALARM, time=NOW, valid=True, lat=31.0, lon=121.0, alarms=["sos"])
    beat = Message(MessageType.HEARTBEAT)
    positions, events = to_rows([fix, beat], "T", "gt06", NOW, b"\x78\x78", Plausibility(300, 1000))
    assert [p.alarms for p in positions] == [["sos"]]
    assert [e.type for e in events] == ["alarm", "heartbeat"]
    assert events[1].time == NOW  # no device time: the receive time
    assert positions[0].raw == b"\x78\x78" and all(e.raw is None for e in events)


def test_only_logins_and_heartbeats_are_answered_before_they_are_durable() -> None:
    assert not needs_durable_ack([Message(MessageType.LOGIN), Message(MessageType.HEARTBEAT)])
    assert needs_durable_ack([Message(MessageType.HEARTBEAT), Message(MessageType.STATUS)])
    assert not needs_durable_ack([])


def test_the_near_fix_shortcut_still_flags_a_jump_just_beyond_it() -> None:
    # 0.0029 degrees in both is under the 0.5 km noise floor (no haversine needed);
    # 0.005 degrees of latitude in one second (0.56 km, ~2000 km/h) is a jump.
    check = Plausibility(max_future_s=300, max_speed_kmh=1000).check
    assert check("T", NOW, NOW, True, 31.0, 121.0) == 0
    assert check("T", NOW + timedelta(seconds=1), NOW, True, 31.0029, 121.0029) == 0
    assert check("T", NOW + timedelta(seconds=2), NOW, True, 31.0079, 121.0029) == Flag.JUMP


def test_rows_carry_every_field_in_its_place() -> None:
    fix = Message(
        MessageType.POSITION,
        time=NOW,
        valid=False,
        lat=31.5,
        lon=121.25,
        speed_kmh=42.0,
        course=270.0,
        altitude_m=12.0,
        satellites=7,
        hdop=1.4,
        alarms=["overspeed"],
        attributes={"ignition": True},
    )
    status = Message(MessageType.STATUS, time=NOW, attributes={"power_v": 12.5})
    later = NOW + timedelta(seconds=5)
    positions, events = to_rows([fix, status], "T1", "jt808", later, b"\x7e", Plausibility(300, 1000))
    (row,) = positions
    assert (row.terminal_id, row.fix_time, row.received_at, row.protocol) == ("T1", NOW, later, "jt808")
    assert (row.valid, row.lat, row.lon, row.altitude_m) == (False, 31.5, 121.25, 12.0)
    assert (row.speed_kmh, row.course, row.satellites, row.hdop) == (42.0, 270.0, 7, 1.4)
    assert (row.alarms, row.attributes, row.raw, row.flags) == (
        ["overspeed"],
        {"ignition": True},
        b"\x7e",
        Flag.NO_FIX,
    )
    assert row.alarms is not fix.alarms and row.attributes is not fix.attributes
    (event,) = events
    assert (event.terminal_id, event.time, event.received_at, event.protocol) == ("T1", NOW, later, "jt808")
    assert (event.type, event.alarms, event.attributes, event.raw) == ("status", [], {"power_v": 12.5}, None)
