"""H02: every captured frame, each message type, the framer fed every way, replies, device codec."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.messages import Message, MessageType
from core.vocabulary import Alarm, Attr
from gateway.protocols import h02
from gateway.protocols.base import DecodeContext, MalformedFrame, UnsupportedMessage
from tests.protocols.support import assert_sane, feedings, load_captures, run_framer

CAPTURES = load_captures("h02")
RECEIVED = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def decode(frame: bytes | str, **options: object) -> list[Message]:
    wire = frame.encode("latin-1") if isinstance(frame, str) else frame
    context = DecodeContext(received_at=RECEIVED, options=options)
    return h02.decode(wire, context).messages


def positions(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.type == MessageType.POSITION and m.has_fix]


@pytest.mark.parametrize("capture", CAPTURES, ids=str)
def test_captured_frame(capture) -> None:
    messages = decode(capture.wire)
    assert messages
    for message in messages:
        assert_sane(message)
        assert message.terminal_id
    fixes = positions(messages)
    if capture.check.startswith("verifyPosition"):
        assert fixes, "a position was expected"
    elif capture.check == "verifyNull":
        assert not fixes
    elif capture.check.startswith("verifyAttribute"):
        assert any(m.attributes for m in messages)
    expected = capture.expected
    if "time" in expected:
        want = datetime.fromisoformat(expected["time"].replace(" ", "T")).replace(tzinfo=UTC)
        assert fixes[0].time == want
    if "valid" in expected:
        assert fixes[0].valid is expected["valid"]
    if "lat" in expected:
        assert fixes[0].lat == pytest.approx(expected["lat"], abs=1e-5)
        assert fixes[0].lon == pytest.approx(expected["lon"], abs=1e-5)
    if "status" in expected:
        assert messages[0].attributes[Attr.STATUS] == expected["status"]


def test_v1_fields_and_knots() -> None:
    (fix,) = decode("*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,010.00,123,221215,FFFFFBFF#")
    assert fix.terminal_id == "4210051415"
    assert fix.time == datetime(2015, 12, 22, 16, 45, 49, tzinfo=UTC)
    assert fix.lat == pytest.approx(9.939782, abs=1e-6)
    assert fix.lon == pytest.approx(-84.1117800, abs=1e-6)
    assert fix.speed_kmh == pytest.approx(18.52)
    assert fix.course == 123.0
    assert fix.attributes[Attr.IGNITION] is False
    assert fix.alarms == []


@pytest.mark.parametrize(
    ("word", "alarms", "ignition"),
    [
        ("FFFFFFFF", [], True),
        ("FFFFFFFE", [Alarm.VIBRATION], True),
        ("FFFFFFFD", [Alarm.SOS], True),
        ("FFFBFFFF", [Alarm.SOS], True),
        ("FFFFFFFB", [Alarm.OVERSPEED], True),
        ("FFF7FFFF", [Alarm.POWER_CUT], True),
        ("FFFFFBFF", [], False),
    ],
)
def test_status_word_is_active_low(word: str, alarms: list[str], ignition: bool) -> None:
    (fix,) = decode(f"*HQ,2705171109,V1,213324,A,5002.5849,N,01433.7822,E,0.00,000,140613,{word}#")
    assert fix.alarms == alarms
    assert fix.attributes[Attr.IGNITION] is ignition
    assert fix.attributes[Attr.STATUS] == int(word, 16)
    if Alarm.POWER_CUT in alarms:
        assert fix.attributes[Attr.POWER_CUT] is True


@pytest.mark.parametrize(
    ("lat", "lon", "want_lat", "want_lon"),
    [
        ("-23-29.0095,S", "-46-51.5852,W", -23.48349, -46.85975),
        ("37573392,S", "145037022,E", -37.955653, 145.061703),
        ("701.8915,S", "3450.3399,W", -7.031525, -34.838998),
        ("2827.61232,N", "07703.84822,E", 28.46021, 77.06414),
    ],
)
def test_odd_coordinate_forms(lat: str, lon: str, want_lat: float, want_lon: float) -> None:
    (fix,) = decode(f"*HQ,1451316409,V1,030149,A,{lat},{lon},2.4,065,070315,FFFFFFFF#")
    assert fix.lat == pytest.approx(want_lat, abs=1e-5)
    assert fix.lon == pytest.approx(want_lon, abs=1e-5)


def test_empty_validity_and_padded_speed() -> None:
    (fix,) = decode("*HQ,355488020119695,V1,050418,,2827.61232,N,07703.84822,E,  3.00,0,031015,FFFEFBFF#")
    assert fix.valid is False
    assert fix.speed_kmh == pytest.approx(5.556)


def test_v1_without_time_uses_reception_time() -> None:
    (fix,) = decode("*HQ,353505220873067,V1,,V,4605.75732,N,01430.73863,E,0.00,0,,FFFFFFEF#")
    assert fix.time == RECEIVED
    assert fix.valid is False


def test_v1_without_position_is_a_status() -> None:
    (status,) = decode("*HQ,353505510948929,V1,,V,,N,,E,0.00,0,,FFFFF7FF,f0,a,11a0,c0c6#")
    assert status.type == MessageType.STATUS
    assert not status.has_fix
    assert status.attributes[Attr.CELL] == {"mcc": 240, "mnc": 10, "lac": 0x11A0, "cid": 0xC0C6}


def test_v1_decimal_cell() -> None:
    (fix,) = decode(
        "*HQ,8161289587,V1,181933,A,5444.3994,N,02516.3844,E,000.05,000,090317,FFFFBBFF,246,03,00002,41565#"
    )
    assert fix.attributes[Attr.CELL] == {"mcc": 246, "mnc": 3, "lac": 2, "cid": 41565}


def test_v19_iccid() -> None:
    (fix,) = decode(
        "*HQ,4209917484,V19,093043,V,5052.9749,N,00426.4322,E,000.00,000,130916,,0032475874141,8944538530000543700F,FFFFFBFF#"
    )
    assert fix.attributes[Attr.ICCID] == "8944538530000543700"
    assert fix.attributes[Attr.STATUS] == 0xFFFFFBFF


def test_vp1_valid_and_cells() -> None:
    (fix,) = decode("*hq,356327080425330,VP1,A,2702.7215,S,15251.9309,E,0.62,0.0000,050917#")
    assert fix.lat == pytest.approx(-27.045358, abs=1e-6)
    assert fix.time is not None and fix.time.date() == datetime(2017, 9, 5).date()
    (cells,) = decode("*hq,356327081001239,VP1,V,470,002,92,3565,0Y92,19433,30Y92,1340,29#")
    assert cells.type == MessageType.STATUS
    assert [cell["cid"] for cell in cells.attributes["h02.cells"]] == [3565, 19433, 1340]


def test_v3_and_nbr_cells() -> None:
    (v3,) = decode(
        "*HQ,355488020882405,V3,095426,74001,04,010278,045142,128,,010278,026311,125,,010278,026582,125,,"
        "010278,028322,119,,02DD,0,X,090517,FFFFFBFF#"
    )
    assert v3.time == datetime(2017, 5, 9, 9, 54, 26, tzinfo=UTC)
    assert v3.attributes[Attr.CELL] == {"mcc": 740, "mnc": 1, "lac": 10278, "cid": 45142}
    assert len(v3.attributes["h02.cells"]) == 4
    (nbr,) = decode("*HQ,7401004662,NBR,160453,234,10,0,2,21580,27766,-67,21580,27767,-67,291019,FFFFFBFF,6#")
    assert nbr.time == datetime(2019, 10, 29, 16, 4, 53, tzinfo=UTC)
    assert [cell["cid"] for cell in nbr.attributes["h02.cells"]] == [27766, 27767]
    assert nbr.attributes[Attr.STATUS] == 0xFFFFFBFF


def test_heartbeats_carry_battery() -> None:
    (htbt,) = decode("*HQ,355488020119695,HTBT,100#")
    assert htbt.type == MessageType.HEARTBEAT
    assert htbt.attributes[Attr.BATTERY_LEVEL] == 100
    (link,) = decode("*HQ,355488020119695,LINK,112725,20,8,84,0,0,031015,FFFFFBFF#")
    assert link.type == MessageType.HEARTBEAT
    assert link.attributes[Attr.BATTERY_LEVEL] == 84
    assert link.satellites == 8
    assert link.time == datetime(2015, 10, 3, 11, 27, 25, tzinfo=UTC)


def test_v4_command_echo_with_position() -> None:
    echo, fix = decode(
        "*TH,2020916012,V4,S20,ERROR,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#"
    )
    assert echo.type == MessageType.COMMAND_RESULT
    assert echo.attributes[Attr.RESULT] == "S20,ERROR,130305"
    assert fix.time == datetime(2002, 9, 22, 5, 3, 16, tzinfo=UTC)
    assert fix.has_fix


def test_binary_frame_fields() -> None:
    (fix,) = decode(
        bytes.fromhex(
            "24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c000000001f"
        )
    )
    assert fix.terminal_id == "4106000826"
    assert fix.time == datetime(2015, 8, 31, 21, 53, 21, tzinfo=UTC)
    assert fix.lat == pytest.approx(4.69898, abs=1e-5)
    assert fix.lon == pytest.approx(-74.06971, abs=1e-5)
    assert fix.valid is True
    assert fix.attributes[Attr.CELL] == {"mcc": 732, "mnc": 12, "lac": 0, "cid": 31}


def test_binary_long_id() -> None:
    (fix,) = decode(
        bytes.fromhex("2435248308419329301047591808172627335900074412294E024138FEFFFFFFFF01120064BA73005ECC")
    )
    assert fix.terminal_id == "352483084193293"
    assert fix.time == datetime(2017, 8, 18, 10, 47, 59, tzinfo=UTC)
    assert fix.speed_kmh == pytest.approx(24 * 1.852)
    assert fix.course == 138.0


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("*HQ,123,V1,1200#", MalformedFrame),
        ("*HQ,123,ZZ9,1#", UnsupportedMessage),
        ("*XX,123,V1#", MalformedFrame),
        ("*HQ,4210051415,V1,164549,A,9956.3869,N,08406.7068,W,0,0,221215,FFFFFBFF#", MalformedFrame),
        ("*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,0,0,221215,FFFFZBFF#", MalformedFrame),
        ("*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,0,0,331215,FFFFFBFF#", MalformedFrame),
    ],
)
def test_bad_frames_are_errors(frame: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode(frame)


# --------------------------------------------------------------------------- framer


def stream_frames() -> list[bytes]:
    frames = []
    for capture in CAPTURES:
        wire = capture.wire.rstrip(b"\r\n")
        if wire[:1] == b"$" and len(wire) != h02.SHORT:
            continue  # longer binary frames: see test_long_binary_frames_need_a_delimiter
        frames.append(wire)
    return frames


@pytest.mark.parametrize("way", [name for name, _ in feedings([b""])])
def test_framer_feedings(way: str) -> None:
    frames = stream_frames()
    chunks = dict(feedings(frames))[way]
    assert run_framer(h02.SPEC, chunks) == frames


def test_long_binary_frames_need_a_delimiter() -> None:
    """No length field: a 45/48-byte frame is cut where the next frame starts, or where the
    bytes received end (one TCP write)."""
    long_frames = [c.wire for c in CAPTURES if c.wire[:1] == b"$" and len(c.wire) != h02.SHORT]
    text = b"*HQ,2705171109,V1,213324,A,5002.5849,N,01433.7822,E,0.00,000,140613,FFFFFFFF#"
    for frame in long_frames:
        assert run_framer(h02.SPEC, [frame]) == [frame]
        assert run_framer(h02.SPEC, [frame + text]) == [frame, text]
        assert run_framer(h02.SPEC, [frame[:20], frame[20:] + text]) == [frame, text]


def test_framer_skips_garbage_and_swallows_line_ends() -> None:
    text = b"*HQ,2705171109,V1,213324,A,5002.5849,N,01433.7822,E,0.00,000,140613,FFFFFFFF#"
    framer = h02.SPEC.framer()
    assert framer.feed(b"noise" + text + b"\r\n" + b"$\x00zz" + text) == [text, text]
    assert framer.garbage_bytes == len(b"noise") + len(b"$\x00zz")
    assert framer.buffered == 0


def test_framer_resyncs_after_a_cut_frame() -> None:
    text = b"*HQ,2705171109,V1,213324,A,5002.5849,N,01433.7822,E,0.00,000,140613,FFFFFFFF#"
    framer = h02.SPEC.framer()
    assert framer.feed(text[:30] + text) == [text]
    assert framer.garbage_bytes == 30


def test_framer_bounds_a_frame_that_never_ends() -> None:
    framer = h02.SPEC.framer()
    assert framer.feed(b"*HQ," + b"9" * 5000) == []
    assert framer.buffered <= h02.MAX_TEXT * 2


def test_datagram_with_several_frames() -> None:
    text = b"*HQ,2705171109,V1,213324,A,5002.5849,N,01433.7822,E,0.00,000,140613,FFFFFFFF#"
    binary = bytes.fromhex(
        "24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c000000001f"
    )
    assert h02.split_datagram(text + binary).frames == [text, binary]
    assert h02.split_datagram(binary).frames == [binary]


# --------------------------------------------------------------------------- replies and device


def test_no_reply_by_default_and_v4_ack_when_enabled() -> None:
    frame = b"*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,000.00,000,221215,FFFFFBFF#"
    assert h02.decode(frame, DecodeContext(received_at=RECEIVED)).reply is None
    decoded = h02.decode(frame, DecodeContext(received_at=RECEIVED, options={"ack": True}))
    assert decoded.reply == b"*HQ,4210051415,V4,V1,20261127060000#"
    device = h02.H02Device("4210051415")
    assert device.on_reply(decoded.reply).handshake_done
    assert not h02.H02Device("999").on_reply(decoded.reply).handshake_done


@pytest.mark.parametrize("binary", [False, True])
def test_device_position_round_trip(binary: bool) -> None:
    device = h02.H02Device("4210051415", binary=binary)
    sent = Message(
        MessageType.POSITION,
        time=datetime(2026, 11, 27, 5, 59, 30, tzinfo=UTC),
        valid=True,
        lat=-33.868820,
        lon=151.209296,
        speed_kmh=55.56,
        course=271.0,
        alarms=[Alarm.SOS],
        attributes={Attr.IGNITION: True},
    )
    outgoing = device.position(sent)
    assert run_framer(h02.SPEC, [outgoing.data]) == [outgoing.data]
    (fix,) = decode(outgoing.data)
    assert fix.terminal_id == "4210051415"
    assert fix.time == sent.time
    assert fix.lat == pytest.approx(sent.lat, abs=2e-6)
    assert fix.lon == pytest.approx(sent.lon, abs=2e-6)
    assert fix.speed_kmh == pytest.approx(55.56, abs=1.0)
    assert fix.course == 271.0
    assert fix.alarms == [Alarm.SOS]
    assert fix.attributes[Attr.IGNITION] is True


def test_device_heartbeat_and_status() -> None:
    device = h02.H02Device("4210051415")
    (beat,) = decode(device.heartbeat({Attr.BATTERY_LEVEL: 77}).data)  # type: ignore[union-attr]
    assert beat.attributes[Attr.BATTERY_LEVEL] == 77
    status = device.status({Attr.BATTERY_LEVEL: 40, Attr.GSM_SIGNAL: 60}, [Alarm.POWER_CUT])
    (link,) = decode(status.data)  # type: ignore[union-attr]
    assert link.alarms == [Alarm.POWER_CUT]
    assert link.attributes[Attr.BATTERY_LEVEL] == 40
    assert link.attributes[Attr.GSM_SIGNAL] == 60


def test_cut_text_frame_before_a_binary_frame_holding_hash_bytes() -> None:
    device = h02.H02Device("2705171109", binary=True)
    fix = Message(MessageType.POSITION, time=datetime(2023, 3, 23, 23, 23, 23, tzinfo=UTC), lat=1.0, lon=2.0)
    binary = device.position(fix).data
    assert b"#" in binary  # 0x23 is the BCD of 23
    text = b"*HQ,2705171109,V1,213324,A,5002.5849,N,01433.7822,E,0.00,000,140613,FFFFFFFF#"
    assert run_framer(h02.SPEC, [text[:30] + binary + text]) == [binary, text]
