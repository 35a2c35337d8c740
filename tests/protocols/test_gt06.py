"""GT06 / Concox: captured frames, each packet type built by the terminal codec, framing
(length and 0D 0A fallback), replies that echo the serial, and the session's time zone."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest

from core.messages import Message, MessageType
from gateway.protocols import get_protocol, gt06
from gateway.protocols.base import ChecksumError, DecodeContext, UnsupportedMessage, parse_tz
from tests.protocols.binary_checks import check_capture, check_feedings, decode_session
from tests.protocols.support import load_captures
from tests.protocols.test_checksums import crc_x25_reference

SPEC = get_protocol("gt06")
CAPTURES = load_captures("gt06")
IMEI = "864717003664467"
NOW = datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)
# Traccar values gpsfleet does not read (undocumented vendor layouts): the frame must still
# decode.  Seq 10 appends a temperature to 0x12 in a layout of its own; seq 27 is a 0x70
# modular packet whose alarm module is not documented; adc1 is an X1 analog input.
UNMAPPED = frozenset({"adc1"})
UNMAPPED_BY_SEQ = {10: frozenset({"temp1"}), 27: frozenset({"alarm"})}


def ctx(**kwargs: object) -> DecodeContext:
    return DecodeContext(received_at=NOW, **kwargs)  # type: ignore[arg-type]


def fix(**overrides: object) -> Message:
    values: dict[str, object] = dict(
        type=MessageType.POSITION,
        terminal_id=IMEI,
        time=datetime(2024, 5, 1, 9, 30, 15, tzinfo=UTC),
        valid=True,
        lat=54.94535,
        lon=-24.01762,
        speed_kmh=73.0,
        course=123.0,
        satellites=9,
    )
    values.update(overrides)
    return Message(**values)  # type: ignore[arg-type]


def expected_reply(protocol: int, serial: int, content: bytes = b"") -> bytes:
    """A reply built by hand from the facts: 78 78 len protocol content serial crc 0D 0A."""
    covered = bytes((len(content) + 5, protocol)) + content + struct.pack(">H", serial)
    return b"\x78\x78" + covered + struct.pack(">H", crc_x25_reference(covered)) + b"\r\n"


@pytest.mark.parametrize("capture", CAPTURES, ids=str)
def test_captured_frame_decodes_to_expected_values(capture):
    check_capture(
        SPEC,
        capture,
        alarms={"lowBattery": "low_battery"},
        unmapped=UNMAPPED | UNMAPPED_BY_SEQ.get(capture.seq, frozenset()),
    )


def test_captured_values_in_detail():
    by_seq = {c.seq: c for c in CAPTURES}
    (gps,) = SPEC.decode(by_seq[5].wire, ctx()).messages
    assert gps.attributes["cell"] == {"mcc": 302, "mnc": 720, "lac": 0x75DF, "cid": 0x0084890C}
    (alarm,) = SPEC.decode(by_seq[114].wire, ctx()).messages
    assert alarm.type == MessageType.ALARM and alarm.alarms == ["overspeed"]
    assert alarm.speed_kmh == 88.0 and alarm.attributes["ignition"] is True
    assert alarm.attributes["battery_level"] == 100 and alarm.attributes["gsm_signal"] == 100
    (status,) = SPEC.decode(by_seq[38].wire, ctx()).messages
    assert status.alarms == ["sos"] and not status.has_fix
    (info,) = SPEC.decode(by_seq[83].wire, ctx()).messages
    assert info.attributes["iccid"] == "8960191302978058275"  # nibble-swapped on the wire
    (text,) = SPEC.decode(by_seq[54].wire, ctx()).messages
    assert text.attributes["result"] == "Command error!"
    (modular,) = SPEC.decode(by_seq[27].wire, ctx()).messages
    assert modular.time == datetime(2019, 9, 15, 13, 18, 16, tzinfo=UTC)
    assert (modular.lat, modular.lon) == (pytest.approx(43.894466), pytest.approx(-79.27285))
    assert modular.attributes["iccid"] == "89012608522933976266"
    assert modular.attributes["battery_v"] == 3.7
    (card,) = SPEC.decode(by_seq[29].wire, ctx()).messages
    assert card.attributes["driver_id"] == "5900B48CEB"


def test_captured_frames_through_the_framer():
    frames = [c.wire for c in CAPTURES if c.intact]
    check_feedings(SPEC, frames, SPEC.device(IMEI).corrupt_checksum)


def test_wifi_packets_frame_on_the_line_end():
    wifi = [c.wire for c in CAPTURES if c.seq in (56, 58, 59, 60)]
    stream = b"".join(wifi)
    assert gt06.split(stream).frames == wifi
    for frame in wifi:
        with pytest.raises(ChecksumError):
            SPEC.decode(frame, ctx())
        decoded = SPEC.decode(frame, ctx(lenient=True))
        (message,) = decoded.messages
        assert message.time is not None and message.attributes["checksum_ok"] is False
        assert decoded.reply == b"\x78\x78\x00" + frame[3:4] + frame[4:10] + b"\r\n"


def test_three_long_frames_in_one_buffer():
    device = SPEC.device(IMEI)
    frames = [device.packet(gt06.INFO, b"\x00" + struct.pack(">H", 1234 + i), long=True)[0] for i in range(3)]
    result = gt06.split(b"".join(frames))
    assert result.frames == frames and result.consumed == sum(map(len, frames))
    values = [SPEC.decode(f, ctx()).messages[0].attributes["power_v"] for f in result.frames]
    assert values == [12.34, 12.35, 12.36]


def test_framer_keeps_a_trailing_start_byte():
    frame = SPEC.device(IMEI).heartbeat().data
    result = gt06.split(b"noise" + frame + b"\x78")
    assert result.frames == [frame] and result.garbage == 5
    assert result.consumed == len(b"noise" + frame)


# --------------------------------------------------------------------------- login and zone


def test_login_reply_echoes_the_serial():
    capture = next(c for c in CAPTURES if c.seq == 110)
    decoded = SPEC.decode(capture.wire, ctx())
    assert decoded.terminal_id == IMEI
    assert decoded.reply == expected_reply(0x01, 0x0002) == bytes.fromhex("787805010002eb470d0a")
    assert decoded.messages[0].attributes["time_zone"] == "-04:00"


def test_login_zone_applies_to_later_frames_of_the_session():
    device = SPEC.device(IMEI, tz=parse_tz("+08:00"))
    login = device.handshake()
    position = device.position(fix())
    decoded = decode_session(SPEC, [login.data, position.data])
    assert decoded[0]["attributes"]["time_zone"] == "+08:00"
    assert decoded[1]["terminal_id"] == IMEI
    assert decoded[1]["time"] == "2024-05-01T09:30:15Z"
    # the clock bytes on the wire are local (+08:00): 17:30:15
    content = position.data[4:]
    assert content[:6] == bytes((24, 5, 1, 17, 30, 15))
    # without the login the same frame reads as UTC, 8 hours later
    assert SPEC.decode(position.data, ctx()).messages[0].time == fix().time + timedelta(hours=8)


def test_login_round_trip_acknowledges():
    device = SPEC.device(IMEI)
    login = device.handshake()
    decoded = SPEC.decode(login.data, ctx())
    assert decoded.reply == expected_reply(0x01, login.seq)
    event = device.on_reply(decoded.reply)
    assert event.handshake_done and event.acked == [login.seq]


# --------------------------------------------------------------------------- positions


def test_position_round_trip_with_independent_field_values():
    device = SPEC.device(IMEI)
    message = fix(
        attributes={"ignition": True, "odometer_m": 5000, "cell": {"mcc": 246, "mnc": 1, "lac": 7, "cid": 99}}
    )
    out = device.position(message)
    assert out.data[3] == gt06.GPS_LBS_2 and not out.needs_ack
    content = out.data[4:]
    sats, lat, lon, speed, flags = struct.unpack_from(">BIIBH", content, 6)
    assert sats & 0x0F == 9
    assert lat == 98901630 and lon == 43231716  # minutes x 30000
    assert speed == 73
    assert flags == 123 | 0x0400 | 0x0800 | 0x1000 | 0x4000 | 0x8000  # north, west, valid, ACC on

    decoded = SPEC.decode(out.data, ctx())
    assert decoded.reply is None  # plain locations need no reply
    (back,) = decoded.messages
    assert back.time == message.time
    assert (back.lat, back.lon) == (pytest.approx(54.94535, abs=1e-6), pytest.approx(-24.01762, abs=1e-6))
    assert back.speed_kmh == 73.0 and back.course == 123.0 and back.satellites == 9
    assert back.attributes["ignition"] is True
    assert back.attributes["odometer_m"] == 5000
    assert back.attributes["cell"] == {"mcc": 246, "mnc": 1, "lac": 7, "cid": 99}


def test_power_voltage_travels_in_an_information_packet():
    device = SPEC.device(IMEI)
    out = device.position(fix(attributes={"power_v": 12.6}))
    frames = gt06.split(out.data).frames
    assert [f[3] if f[0] == 0x78 else f[4] for f in frames] == [gt06.GPS_LBS_2, gt06.INFO]
    (info,) = SPEC.decode(frames[1], ctx()).messages
    assert info.type == MessageType.INFO and info.attributes["power_v"] == 12.6
    assert frames[1][5:8] == b"\x00" + struct.pack(">H", 1260)  # sub-type 0, then 0.01 V


@pytest.mark.parametrize("alarm", ["sos", "power_cut", "vibration", "overspeed", "low_battery", "tamper"])
def test_alarm_packet_round_trip(alarm):
    device = SPEC.device(IMEI)
    out = device.position(fix(alarms=[alarm], attributes={"ignition": False, "charging": True}))
    assert out.data[3] == gt06.ALARM and out.needs_ack
    decoded = SPEC.decode(out.data, ctx())
    (back,) = decoded.messages
    assert back.type == MessageType.ALARM and alarm in back.alarms
    assert back.attributes["charging"] is True and back.attributes["ignition"] is False
    assert back.has_fix
    assert decoded.reply == expected_reply(gt06.ALARM, out.seq)
    assert device.on_reply(decoded.reply).acked == [out.seq]


def test_alarm_code_byte_from_the_facts():
    # GPS block, LBS, terminal information 0x02 (ACC), voltage 4, GSM 3, alarm 0x2C (accident)
    content = bytes((24, 5, 1, 9, 0, 0, 0xC8)) + struct.pack(">IIBH", 1, 1, 0, 0x1000)
    content += b"\x09" + bytes(8) + bytes((0x02, 4, 3, 0x2C, 0x02))
    frame = gt06.encode_packet(gt06.ALARM_2, content, 0x0102)
    (message,) = SPEC.decode(frame, ctx()).messages
    assert message.alarms == ["accident"]
    assert message.attributes["event_code"] == 0x2C
    assert message.attributes["battery_level"] == round(4 * 100 / 6)
    assert message.attributes["gsm_signal_raw"] == 3


# --------------------------------------------------------------------------- status, info, time


def test_heartbeat_round_trip():
    device = SPEC.device(IMEI)
    out = device.heartbeat({"battery_level": 50, "gsm_signal": 75, "ignition": True})
    decoded = SPEC.decode(out.data, ctx())
    (status,) = decoded.messages
    assert status.type == MessageType.STATUS
    assert status.attributes["battery_level"] == 50  # level 3 of 6
    assert status.attributes["gsm_signal"] == 75 and status.attributes["ignition"] is True
    assert decoded.reply == expected_reply(gt06.STATUS, out.seq)
    assert device.on_reply(decoded.reply).acked == [out.seq]


def test_heartbeat_0x23_is_echoed():
    capture = next(c for c in CAPTURES if c.seq == 42)
    decoded = SPEC.decode(capture.wire, ctx())
    assert decoded.reply == expected_reply(0x23, 0x0008)
    assert decoded.messages[0].attributes["battery_v"] == 2.9


def test_status_with_alarm_and_iccid():
    device = SPEC.device(IMEI)
    out = device.status({"iccid": "89882390000097302650", "power_v": 0.0}, ["power_cut"])
    frames = gt06.split(out.data).frames
    decoded = decode_session(SPEC, frames)
    assert decoded[0]["type"] == "alarm" and decoded[0]["alarms"] == ["power_cut"]
    assert decoded[1]["attributes"]["power_v"] == 0.0
    assert decoded[2]["attributes"]["iccid"] == "89882390000097302650"
    reply = SPEC.decode(frames[0], ctx()).reply
    assert reply == expected_reply(gt06.LBS_STATUS, out.seq)


def test_time_request_is_answered_with_utc():
    capture = next(c for c in CAPTURES if c.seq == 119)
    decoded = SPEC.decode(capture.wire, ctx())
    assert decoded.messages[0].type == MessageType.TIME_REQUEST
    assert decoded.reply == expected_reply(0x8A, 0x0006, bytes((24, 5, 1, 10, 20, 30)))


def test_string_packet_with_iccid():
    text = b"ICCID:89882390000097302650"
    content = bytes((len(text) + 4,)) + b"\x00\x00\x00\x01" + text + b"\x00\x02"
    (message,) = SPEC.decode(gt06.encode_packet(gt06.STRING, content, 5), ctx()).messages
    assert message.attributes["iccid"] == "89882390000097302650"
    assert message.attributes["result"] == text.decode()


def test_bad_crc_strict_and_lenient():
    device = SPEC.device(IMEI)
    bad = device.corrupt_checksum(device.position(fix()).data)
    with pytest.raises(ChecksumError):
        SPEC.decode(bad, ctx())
    (message,) = SPEC.decode(bad, ctx(lenient=True)).messages
    assert message.attributes["checksum_ok"] is False and message.has_fix


def test_unknown_protocol_is_unsupported():
    with pytest.raises(UnsupportedMessage):
        SPEC.decode(gt06.encode_packet(0xEE, b"\x01", 1), ctx())


def test_iccid_goes_once_with_positions():
    device = SPEC.device(IMEI)
    card = {"iccid": "89882390000097302650"}
    first = decode_session(SPEC, gt06.split(device.position(fix(attributes=card)).data).frames)
    again = decode_session(SPEC, gt06.split(device.position(fix(attributes=card)).data).frames)
    assert [m["attributes"].get("iccid") for m in first] == [None, "89882390000097302650"]
    assert len(again) == 1


def test_4g_gps_packet():
    gps = bytes((24, 5, 1, 9, 0, 0, 0xCA)) + struct.pack(">IIBH", 98901630, 43231716, 50, 0x1C00 | 90)
    cell = struct.pack(">HBI", 460, 1, 0x12345) + (987654321).to_bytes(8, "big")
    content = gps + cell + b"\x01\x00\x01" + struct.pack(">I", 777)
    (message,) = SPEC.decode(gt06.encode_packet(gt06.GPS_4G, content, 3), ctx()).messages
    assert (message.lat, message.lon) == (pytest.approx(54.94535), pytest.approx(-24.01762))
    assert message.attributes["cell"] == {"mcc": 460, "mnc": 1, "lac": 0x12345, "cid": 987654321}
    assert message.attributes["ignition"] is True and message.attributes["archived"] is True
    assert message.attributes["odometer_m"] == 777


def test_address_request_carries_a_fix():
    gps = bytes((24, 5, 1, 9, 0, 0, 0xC8)) + struct.pack(">IIBH", 98901630, 43231716, 0, 0x1400)
    content = gps + b"13800138000".ljust(21, b"\x00") + b"\x00\x01"
    (message,) = SPEC.decode(gt06.encode_packet(gt06.ADDRESS_REQUEST, content, 9), ctx()).messages
    assert message.lat == pytest.approx(54.94535) and message.lon == pytest.approx(24.01762)
    assert "cell" not in message.attributes


def test_corrupting_a_write_spoils_its_report_not_the_extras():
    device = SPEC.device(IMEI)
    out = device.position(fix(attributes={"power_v": 12.6}))
    decoded = decode_session(SPEC, gt06.split(device.corrupt_checksum(out.data)).frames)
    assert decoded[0] == "checksum" and decoded[1]["attributes"]["power_v"] == 12.6


def test_4g_lbs_alarm_is_echoed():
    cell = struct.pack(">HBI", 460, 0, 0x2866) + (0x0EEE).to_bytes(8, "big")
    frame = gt06.encode_packet(gt06.LBS_ALARM_4G, cell + bytes((0x06, 4, 3, 0x01, 0x02)), 0x0A)
    decoded = SPEC.decode(frame, ctx())
    (alarm,) = decoded.messages
    assert alarm.type == MessageType.ALARM and alarm.alarms == ["sos"]
    assert alarm.attributes["cell"] == {"mcc": 460, "mnc": 0, "lac": 0x2866, "cid": 0x0EEE}
    assert decoded.reply == expected_reply(gt06.LBS_ALARM_4G, 0x0A)
