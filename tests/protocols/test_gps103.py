"""GPS103 / TK103: captured frames, keywords, times, LOAD/ON replies, framer, device codec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.messages import Message, MessageType
from core.vocabulary import Alarm, Attr
from gateway.protocols import gps103
from gateway.protocols.base import DecodeContext, Decoded, MalformedFrame
from tests.protocols.support import assert_sane, feedings, load_captures, run_framer

CAPTURES = load_captures("gps103")
RECEIVED = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
# Traccar attribute names in the captures, as gpsfleet names them.
ATTRIBUTE_NAMES = {"fuel1": Attr.FUEL, "course": "course"}


def decode(frame: bytes | str, tz=UTC) -> Decoded:
    wire = frame.encode("latin-1") if isinstance(frame, str) else frame
    return gps103.decode(wire, DecodeContext(received_at=RECEIVED, tz=tz))


def positions(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.type == MessageType.POSITION and m.has_fix]


@pytest.mark.parametrize("capture", CAPTURES, ids=str)
def test_captured_frame(capture) -> None:
    decoded = decode(capture.wire)
    assert decoded.messages
    assert decoded.terminal_id
    for message in decoded.messages:
        assert_sane(message)
        assert message.terminal_id == decoded.terminal_id
    fixes = positions(decoded.messages)
    if capture.check.startswith("verifyPosition"):
        assert fixes
    elif capture.check == "verifyNull":
        assert not fixes
    elif capture.check.startswith("verifyAttribute"):
        assert any(m.attributes for m in decoded.messages)
    for name, value in capture.expected.items():
        key = ATTRIBUTE_NAMES[name]
        message = decoded.messages[-1]
        got = getattr(message, key) if key == "course" else message.attributes[key]
        assert got == pytest.approx(value)


def test_report_fields() -> None:
    decoded = decode(
        "imei:353451044508750,001,0809231929,13554900601,F,055403.000,A,2233.1870,N,11354.3067,E,"
        "10.00,30.1,65.43,1,0,10.5%,0.0%,28;"
    )
    (fix,) = decoded.messages
    assert decoded.reply is None
    assert fix.terminal_id == "353451044508750"
    assert fix.time == datetime(2008, 9, 24, 5, 54, 3, tzinfo=UTC)
    assert fix.lat == pytest.approx(22.553117, abs=1e-6)
    assert fix.lon == pytest.approx(113.905112, abs=1e-6)
    assert fix.speed_kmh == pytest.approx(18.52)
    assert fix.course == 30.1
    assert fix.altitude_m == 65.43
    assert fix.attributes[Attr.IGNITION] is True
    assert fix.attributes[Attr.FUEL] == 10.5
    assert fix.attributes[Attr.TEMPERATURE_C] == 28.0
    assert fix.attributes[Attr.EVENT_CODE] == "001"


@pytest.mark.parametrize(
    ("local", "utc", "expected"),
    [
        ("151030080103", "000101.000", datetime(2015, 10, 30, 0, 1, 1, tzinfo=UTC)),
        ("151027025958", "235957.000", datetime(2015, 10, 26, 23, 59, 57, tzinfo=UTC)),
        ("160629022948", "182949.000", datetime(2016, 6, 28, 18, 29, 49, tzinfo=UTC)),
        ("151026220000", "030000.000", datetime(2015, 10, 27, 3, 0, 0, tzinfo=UTC)),
        ("15/10/30 08:01", "000101.000", datetime(2015, 10, 30, 0, 1, 1, tzinfo=UTC)),
    ],
)
def test_utc_time_on_the_local_date(local: str, utc: str, expected: datetime) -> None:
    (fix,) = decode(
        f"imei:359587010124900,tracker,{local},,F,{utc},A,2234.4669,N,11354.3287,E,0.11,321.53,;"
    ).messages
    assert fix.time == expected


def test_local_time_only_uses_the_terminal_zone() -> None:
    frame = "imei:359710048977327,OBD,180301094003,5000000,0.00,0.00,98,18,68.63%,55,25.10%,1368,14.24,,,,;"
    (obd,) = decode(frame, tz=timezone(timedelta(hours=8))).messages
    assert obd.time == datetime(2018, 3, 1, 1, 40, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("keyword", "alarms", "attributes"),
    [
        ("help me", [Alarm.SOS], {}),
        ("low battery", [Alarm.LOW_BATTERY], {}),
        ("ac alarm", [Alarm.POWER_CUT], {Attr.POWER_CUT: True}),
        ("move", [Alarm.MOVEMENT], {}),
        ("speed", [Alarm.OVERSPEED], {}),
        ("stockade", [Alarm.GEOFENCE], {}),
        ("door alarm", [Alarm.DOOR], {}),
        ("sensor alarm", [Alarm.VIBRATION], {}),
        ("accident alarm", [Alarm.ACCIDENT], {}),
        ("acc on", [], {Attr.IGNITION: True}),
        ("acc off", [], {Attr.IGNITION: False}),
        ("T:+28.0", [], {Attr.TEMPERATURE_C: 28.0}),
        ("tracker", [], {}),
    ],
)
def test_keywords(keyword: str, alarms: list[str], attributes: dict) -> None:
    (fix,) = decode(
        f"imei:359586015829802,{keyword},0809231429,13554900601,F,062947.294,A,2234.4026,N,11354.3277,E,0.00,;"
    ).messages
    assert fix.alarms == alarms
    assert fix.attributes[Attr.EVENT_CODE] == keyword
    for key, value in attributes.items():
        assert fix.attributes[key] == value


def test_login_and_heartbeat_replies() -> None:
    login = decode("##,imei:359586015829802,A;")
    assert login.reply == gps103.LOGIN_REPLY == b"LOAD"
    assert login.terminal_id == "359586015829802"
    assert [m.type for m in login.messages] == [MessageType.LOGIN]
    beat = decode("359586015829802;")
    assert beat.reply == gps103.HEARTBEAT_REPLY == b"ON"
    assert [m.type for m in beat.messages] == [MessageType.HEARTBEAT]


def test_heartbeat_glued_before_a_report() -> None:
    decoded = decode(
        "359769031878322imei:359769031878322,tracker,1602160718,2,F,221811.000,A,1655.2193,S,14546.6722,E,0.00,,"
    )
    assert decoded.reply == b"ON"
    assert [m.type for m in decoded.messages] == [MessageType.HEARTBEAT, MessageType.POSITION]
    assert decoded.messages[1].time == datetime(2016, 2, 15, 22, 18, 11, tzinfo=UTC)


def test_no_gps_report_with_cell() -> None:
    (status,) = decode("imei:863070016871385,tracker,0000000119,,L,,,0FB6,,CB5D,,,").messages
    assert status.type == MessageType.STATUS
    assert not status.has_fix
    assert status.attributes[Attr.CELL] == {"lac": 0x0FB6, "cid": 0xCB5D}
    assert status.time == RECEIVED


def test_obd_report() -> None:
    (obd,) = decode(
        "imei:868683027758113,OBD,180905200218,,,,0,0,0.39%,70,9.41%,494,12.60,P0137,P0430,,;"
    ).messages
    assert obd.type == MessageType.STATUS
    assert obd.attributes[Attr.POWER_V] == 12.6
    assert obd.attributes["gps103.rpm"] == 494
    assert obd.attributes["gps103.dtcs"] == ["P0137", "P0430"]


def test_alternative_layout() -> None:
    (fix,) = decode(
        "imei:861359038609986,Equipo 1,---,------,----,214734,241018,26,1,-33.42317,-70.61930,067,229,0674,1.00,08,0,1,---,*"
    ).messages
    assert fix.time == datetime(2018, 10, 24, 21, 47, 34, tzinfo=UTC)
    assert (fix.lat, fix.lon) == (-33.42317, -70.6193)
    assert fix.speed_kmh == 67.0
    assert fix.satellites == 8
    assert fix.hdop == 1.0


@pytest.mark.parametrize(
    "frame",
    [
        "imei:abc,tracker,1302110948,,F,144807.000,A,0805.6615,S,07859.9763,W,0.00,,;",
        "imei:353451047570260,tracker,1302110948,,F,144807.000,A,,S,,W,0.00,,;",
        "imei:353451047570260,tracker,1302110948,,F,144807.000,A,9905.6615,S,07859.9763,W,0.00,,;",
        "hello",
        "123;",
    ],
)
def test_bad_frames_are_errors(frame: str) -> None:
    with pytest.raises(MalformedFrame):
        decode(frame)


# --------------------------------------------------------------------------- framer


def terminated(wire: bytes) -> bytes:
    return wire if wire.endswith((b";", b"*")) else wire + b";"


@pytest.mark.parametrize("way", [name for name, _ in feedings([b""])])
def test_framer_feedings(way: str) -> None:
    frames = [terminated(c.wire) for c in CAPTURES]
    expected = [m.to_json_dict() for f in frames for m in decode(f).messages]
    chunks = dict(feedings(frames))[way]
    got = [m.to_json_dict() for f in run_framer(gps103.SPEC, chunks) for m in decode(f).messages]
    assert got == expected


def test_framer_cuts_unterminated_reports_at_the_next_one() -> None:
    first = b"imei:353451047570260,tracker,1302110948,,F,144807.000,A,0805.6615,S,07859.9763,W,0.00,,"
    second = b"##,imei:359586015829802,A;"
    assert run_framer(gps103.SPEC, [first + second]) == [first, second.rstrip(b";")]


def test_framer_counts_garbage_and_is_bounded() -> None:
    framer = gps103.SPEC.framer()
    assert framer.feed(b"\x00junk;359586015829802;") == [b"359586015829802"]
    assert framer.garbage_bytes == 5
    framer.feed(b"x" * 5000)
    assert framer.buffered <= gps103.MAX_FRAME * 2


def test_datagram_keeps_an_unterminated_last_frame() -> None:
    frame = b"imei:353451047570260,tracker,1302110948,,F,144807.000,A,0805.6615,S,07859.9763,W,0.00,,"
    assert gps103.split_datagram(frame).frames == [frame]


# --------------------------------------------------------------------------- device side


def test_device_session_round_trip() -> None:
    device = gps103.Gps103Device("359586015829802", tz=timezone(timedelta(hours=3)))
    login = device.handshake()
    assert login is not None and login.seq is not None
    reply = decode(login.data).reply
    assert reply is not None
    event = device.on_reply(reply)
    assert event.handshake_done and event.acked == [login.seq]

    beat = device.heartbeat()
    assert beat is not None
    event = device.on_reply(decode(beat.data).reply or b"")
    assert event.acked == [beat.seq]
    assert not event.handshake_done

    sent = Message(
        MessageType.POSITION,
        time=datetime(2026, 11, 26, 23, 30, 5, tzinfo=UTC),  # local date is already the 27th
        valid=True,
        lat=-12.046374,
        lon=-77.042793,
        speed_kmh=37.04,
        course=12.5,
        altitude_m=154.0,
        alarms=[Alarm.SOS],
        attributes={Attr.IGNITION: True, Attr.FUEL: 55.0, Attr.TEMPERATURE_C: -4.5},
    )
    outgoing = device.position(sent)
    assert run_framer(gps103.SPEC, [outgoing.data]) == [outgoing.data.rstrip(b";")]
    (fix,) = decode(outgoing.data).messages
    assert fix.time == sent.time
    assert fix.lat == pytest.approx(sent.lat, abs=2e-6)
    assert fix.lon == pytest.approx(sent.lon, abs=2e-6)
    assert fix.speed_kmh == pytest.approx(37.04, abs=0.01)
    assert fix.course == 12.5
    assert fix.altitude_m == 154.0
    assert fix.alarms == [Alarm.SOS]
    assert fix.attributes[Attr.IGNITION] is True
    assert fix.attributes[Attr.FUEL] == 55.0
    assert fix.attributes[Attr.TEMPERATURE_C] == -4.5


def test_device_status_is_a_no_gps_report() -> None:
    device = gps103.Gps103Device("359586015829802")
    outgoing = device.status({}, [Alarm.POWER_CUT])
    assert outgoing is not None
    (status,) = decode(outgoing.data).messages
    assert status.type == MessageType.STATUS
    assert status.alarms == [Alarm.POWER_CUT]


def test_replies_together_in_one_read() -> None:
    device = gps103.Gps103Device("359586015829802")
    login, beat = device.handshake(), device.heartbeat()
    event = device.on_reply(b"LOADON")
    assert event.handshake_done
    assert sorted(event.acked) == sorted([login.seq, beat.seq])  # type: ignore[union-attr]
