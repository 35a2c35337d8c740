"""JT/T 808: captured frames, every message type built by the terminal codec, framing,
escaping, sub-packages, replies and their round trip."""

from __future__ import annotations

import functools
import operator
import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.messages import Message, MessageType
from core.vocabulary import ALARMS
from gateway.protocols import get_protocol, jt808
from gateway.protocols.base import ChecksumError, DecodeContext, MalformedFrame, UnsupportedMessage
from tests.protocols.binary_checks import check_capture, check_feedings
from tests.protocols.support import load_captures

SPEC = get_protocol("jt808")
CST = timezone(timedelta(hours=8))
CAPTURES = load_captures("jt808")
PHONE = "013345678906"
# 0x5501 has a 1-byte serial (facts): the "LEN(50 vs 51)" note assumed a 2-byte one; with
# the vendor header the declared length matches, so the frame is intact.
VENDOR_HEADER_OK = {14}


def xor_of(data: bytes) -> int:
    return functools.reduce(operator.xor, data, 0)


def ctx(**kwargs: object) -> DecodeContext:
    return DecodeContext(tz=CST, received_at=datetime(2024, 5, 1, tzinfo=UTC), **kwargs)  # type: ignore[arg-type]


def fix(**overrides: object) -> Message:
    values: dict[str, object] = dict(
        type=MessageType.POSITION,
        terminal_id=PHONE,
        time=datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC),
        valid=True,
        lat=22.543210,
        lon=-114.056789,
        speed_kmh=61.5,
        course=271.0,
        altitude_m=35.0,
        satellites=11,
    )
    values.update(overrides)
    return Message(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("capture", CAPTURES, ids=str)
def test_captured_frame_decodes_to_expected_values(capture):
    check_capture(
        SPEC,
        capture,
        tz=CST,
        alarms={"lowBattery": "low_power"},  # bit 7: main power under-voltage
        unmapped=frozenset({"lock1Locked"}),  # vendor lock item 0xD5, kept raw
        intact=True if capture.seq in VENDOR_HEADER_OK else None,
    )


def test_captured_values_in_detail():
    by_seq = {c.seq: c for c in CAPTURES}
    (alarm,) = SPEC.decode(by_seq[4].wire, ctx()).messages
    assert alarm.alarms == ["low_power"]
    assert alarm.terminal_id == "012345678901"
    assert alarm.time == datetime(2021, 7, 26, 12, 35, 31, tzinfo=UTC)  # 20:35:31 at +08:00
    assert alarm.attributes["iccid"] == "89860477012070271502"
    (located,) = SPEC.decode(by_seq[21].wire, ctx()).messages
    assert (located.lat, located.lon) == (-34.895833, 138.514951)  # status bit 2: south
    assert located.satellites == 12
    assert located.attributes["odometer_m"] == 0x1671 * 100
    assert located.attributes["power_v"] == 3.9
    assert located.attributes["battery_level"] == 63
    assert located.attributes["gsm_signal_raw"] == 22
    batch = SPEC.decode(by_seq[13].wire, ctx()).messages
    assert [m.attributes["power_v"] for m in batch] == [74.94, 78.08, 77.33]
    assert all(m.attributes["archived"] for m in batch)
    (vendor,) = SPEC.decode(by_seq[14].wire, ctx()).messages
    assert (vendor.lat, vendor.lon) == (pytest.approx(6.222623), pytest.approx(-75.599188))
    assert vendor.attributes["charging"] is True


def test_captured_frames_through_the_framer():
    frames = [c.wire for c in CAPTURES if c.intact]
    check_feedings(SPEC, frames, SPEC.device(PHONE).corrupt_checksum, tz=CST)


def test_framer_skips_garbage_and_flag_pairs():
    frame = SPEC.device(PHONE).heartbeat().data
    result = jt808.split(b"junk\x7e\x7e" + frame + b"\x7e\x01")
    assert result.frames == [frame]
    assert result.garbage == 6  # "junk", then a lone flag that closed nothing
    assert result.consumed == len(b"junk\x7e\x7e" + frame)  # the last flag may start a frame


def test_framer_drops_an_unterminated_frame_beyond_the_limit():
    result = jt808.split(b"\x7e" + b"\x01" * (jt808.MAX_FRAME + 1))
    assert result.frames == [] and result.garbage == jt808.MAX_FRAME + 2


def test_escaping_both_ways():
    assert jt808.escape(b"\x30\x7e\x08\x7d\x55") == b"\x30\x7d\x02\x08\x7d\x01\x55"
    assert jt808.unescape(b"\x30\x7d\x02\x08\x7d\x01\x55") == b"\x30\x7e\x08\x7d\x55"
    # a serial of 0x7E7D must travel escaped and come back whole
    frame = jt808.encode_frame(jt808.HEARTBEAT, bytes.fromhex(PHONE), 0x7E7D, b"")
    assert frame.count(b"\x7e") == 2
    assert b"\x7d\x02\x7d\x01" in frame
    opened = jt808.open_frame(frame, lenient=False)
    assert opened.serial == 0x7E7D and opened.msg_id == jt808.HEARTBEAT


def test_checksum_strict_and_lenient():
    device = SPEC.device(PHONE)
    bad = device.corrupt_checksum(device.position(fix()).data)
    with pytest.raises(ChecksumError):
        SPEC.decode(bad, ctx())
    (message,) = SPEC.decode(bad, ctx(lenient=True)).messages
    assert message.attributes["checksum_ok"] is False
    assert message.lat == pytest.approx(22.54321)


def test_wrong_body_length_is_malformed():
    frame = jt808.encode_frame(jt808.HEARTBEAT, bytes.fromhex(PHONE), 1, b"")
    inner = bytearray(jt808.unescape(frame[1:-1]))
    inner[3] = 5  # props: a 5-byte body that is not there
    inner[-1] = xor_of(inner[:-1])
    with pytest.raises(MalformedFrame):
        SPEC.decode(b"\x7e" + jt808.escape(bytes(inner)) + b"\x7e", ctx())


def test_unknown_message_is_unsupported():
    frame = jt808.encode_frame(0x0F0F, bytes.fromhex(PHONE), 1, b"\xf0\x01")
    with pytest.raises(UnsupportedMessage):
        SPEC.decode(frame, ctx())


# --------------------------------------------------------------------------- registration


def test_registration_reply_and_authentication_round_trip():
    device = SPEC.device(PHONE)
    register = device.handshake()
    decoded = SPEC.decode(register.data, ctx())
    (login,) = decoded.messages
    assert login.type == MessageType.LOGIN and decoded.terminal_id == PHONE
    assert login.attributes["model"] == "SIM-JT808"
    assert login.attributes["jt808.manufacturer"] == "GPSFL"
    # 0x8100: our serial, result 0, the auth code; checked byte by byte
    reply = decoded.reply
    assert reply is not None and reply[0] == reply[-1] == 0x7E
    inner = jt808.unescape(reply[1:-1])
    body = bytes(struct.pack(">HB", register.seq, 0)) + PHONE.encode()
    assert inner[:4] == struct.pack(">HH", 0x8100, len(body))
    assert inner[4:10] == bytes.fromhex(PHONE)
    assert inner[12:-1] == body
    assert inner[-1] == xor_of(inner[:-1])

    event = device.on_reply(reply)
    assert event.acked == [register.seq] and not event.rejected
    (auth,) = event.send
    decoded = SPEC.decode(auth.data, ctx())
    assert decoded.messages[0].attributes["jt808.auth_code"] == PHONE
    event = device.on_reply(decoded.reply)
    assert event.acked == [auth.seq] and event.handshake_done


def test_captured_registration_2011_layout():
    capture = next(c for c in CAPTURES if c.seq == 3)
    decoded = SPEC.decode(capture.wire, ctx())
    (login,) = decoded.messages
    assert login.terminal_id == "013345678906"
    assert login.attributes["model"] == "BSJ-M7B"
    assert login.attributes["jt808.plate"] == "粤B88888"
    assert jt808.open_frame(decoded.reply, lenient=False).msg_id == jt808.REGISTER_RESPONSE


def test_rejected_registration():
    device = SPEC.device(PHONE)
    register = device.handshake()
    refusal = jt808.encode_frame(
        jt808.REGISTER_RESPONSE, bytes.fromhex(PHONE), 9, struct.pack(">HB", register.seq, 4)
    )
    event = device.on_reply(refusal)
    assert event.rejected and not event.send


def test_authentication_2019_carries_imei_and_firmware():
    device = jt808.Jt808Device2019(PHONE)
    code = b"A1B2"
    frame = device.authenticate(code).data
    opened = jt808.open_frame(frame, lenient=False)
    assert opened.version == 1 and len(opened.phone_bcd) == 10
    decoded = SPEC.decode(frame, ctx())
    attrs = decoded.messages[0].attributes
    assert attrs["jt808.auth_code"] == "A1B2"
    assert attrs["firmware"] == "gpsfleet-sim"
    assert decoded.terminal_id == PHONE  # the zero-padded 2019 phone is the same terminal
    # the reply keeps the 2019 header
    assert jt808.open_frame(decoded.reply, lenient=False).version == 1


# --------------------------------------------------------------------------- location


def test_location_round_trip_with_independent_field_values():
    device = SPEC.device(PHONE)
    message = fix(
        alarms=["sos", "gnss_antenna_cut"],
        attributes={
            "ignition": True,
            "odometer_m": 123400,
            "fuel": 41.5,
            "gsm_signal_raw": 20,
            "battery_level": 80,
            "power_v": 12.64,
            "iccid": "89860477012070271502",
        },
    )
    out = device.position(message)
    inner = jt808.unescape(out.data[1:-1])
    body = inner[12:-1]
    alarm, status, lat, lon = struct.unpack_from(">IIII", body)
    assert alarm == (1 << 0) | (1 << 5)
    assert status == 0b1011  # ACC, valid, (north), west
    assert lat == 22543210 and lon == 114056789
    assert body[22:28] == bytes.fromhex("240501180000")  # 10:00 UTC is 18:00 at +08:00

    decoded = SPEC.decode(out.data, ctx())
    (back,) = decoded.messages
    assert back.time == message.time
    assert (back.lat, back.lon) == (22.54321, -114.056789)
    assert back.speed_kmh == 61.5 and back.course == 271.0 and back.altitude_m == 35.0
    assert back.satellites == 11 and back.valid is True
    assert back.alarms == ["sos", "gnss_antenna_cut"]
    for key in ("ignition", "odometer_m", "fuel", "gsm_signal_raw", "battery_level", "power_v", "iccid"):
        assert back.attributes[key] == message.attributes[key], key
    # 0x8001 names the frame's serial and id; the device takes it as the acknowledgement
    reply = jt808.open_frame(decoded.reply, lenient=False)
    assert reply.msg_id == jt808.PLATFORM_RESPONSE
    assert reply.body == struct.pack(">HHB", out.seq, jt808.LOCATION, 0)
    assert device.on_reply(decoded.reply).acked == [out.seq]


@pytest.mark.parametrize(
    ("bit", "alarm"),
    [
        (0, "sos"),
        (1, "overspeed"),
        (4, "gnss_fault"),
        (5, "gnss_antenna_cut"),
        (6, "gnss_antenna_short"),
        (7, "low_power"),
        (8, "power_cut"),
        (17, "tamper"),
        (28, "movement"),
        (29, "accident"),
        (31, "door"),
    ],
)
def test_alarm_bit_mapping(bit, alarm):
    body = struct.pack(">IIIIhHH", 1 << bit, 0x02, 1, 1, 0, 0, 0) + bytes.fromhex("240501120000")
    frame = jt808.encode_frame(jt808.LOCATION, bytes.fromhex(PHONE), 1, body)
    (message,) = SPEC.decode(frame, ctx()).messages
    assert message.alarms == [alarm]
    assert message.attributes["jt808.alarm"] == 1 << bit


def test_every_set_alarm_bit_is_reported():
    body = struct.pack(">IIIIhHH", 0xFFFFFFFF, 0x02, 1, 1, 0, 0, 0) + bytes.fromhex("240501120000")
    frame = jt808.encode_frame(jt808.LOCATION, bytes.fromhex(PHONE), 1, body)
    (message,) = SPEC.decode(frame, ctx()).messages
    expected = {name for name in jt808.ALARM_BITS if name}
    assert set(message.alarms) == expected
    assert len(message.alarms) == len(expected)  # no duplicates
    assert set(message.alarms) <= ALARMS


def test_location_time_uses_the_terminal_zone():
    frame = SPEC.device(PHONE).position(fix()).data
    at_cst = SPEC.decode(frame, ctx()).messages[0].time
    at_utc = SPEC.decode(frame, DecodeContext()).messages[0].time
    assert at_utc - at_cst == timedelta(hours=8)


def test_status_without_fix_has_no_position():
    device = SPEC.device(PHONE)
    out = device.status({"power_v": 0.0, "power_cut": True}, ["power_cut"])
    (message,) = SPEC.decode(out.data, ctx()).messages
    assert message.type == MessageType.STATUS and not message.has_fix
    assert message.alarms == ["power_cut"]
    assert message.attributes["power_v"] == 0.0


def test_additional_items_that_are_not_tlv_keep_the_fix():
    capture = next(c for c in CAPTURES if c.seq == 12)
    (message,) = SPEC.decode(capture.wire, ctx()).messages
    assert message.has_fix and message.lat == pytest.approx(-27.455656)
    assert message.attributes["jt808.unparsed"]


# --------------------------------------------------------------------------- batch, parts, others


def test_batch_upload_round_trip():
    device = SPEC.device(PHONE)
    fixes = [
        fix(time=datetime(2024, 5, 1, 10, minute, tzinfo=UTC), lat=22.5 + minute / 1000)
        for minute in range(3)
    ]
    out = device.positions(fixes)
    decoded = SPEC.decode(out.data, ctx())
    assert [m.time for m in decoded.messages] == [m.time for m in fixes]
    assert [m.lat for m in decoded.messages] == [22.5, 22.501, 22.502]
    assert all(m.attributes["archived"] for m in decoded.messages)
    assert device.on_reply(decoded.reply).acked == [out.seq]


def test_sub_packages_are_reassembled():
    device = SPEC.device(PHONE)
    whole = jt808.unescape(device.positions([fix(), fix(lat=10.0)]).data[1:-1])[12:-1]
    cut = len(whole) // 2
    phone = bytes.fromhex(PHONE)
    first = jt808.encode_frame(jt808.BATCH, phone, 7, whole[:cut], subpackage=(2, 1))
    second = jt808.encode_frame(jt808.BATCH, phone, 8, whole[cut:], subpackage=(2, 2))
    context = ctx()
    partial = SPEC.decode(first, context)
    assert partial.messages == [] and partial.reply is not None  # each package is acknowledged
    done = SPEC.decode(second, context)
    assert [m.lat for m in done.messages] == [22.54321, 10.0]
    assert context.state["jt808.packets"] == {}


def test_terminal_attributes():
    body = (
        struct.pack(">H", 0b110)
        + b"GPSFL"
        + b"JT-200".ljust(20, b"\x00")
        + b"A123456"
        + bytes.fromhex("89860477012070271502")
        + bytes((4,))
        + b"HW11"
        + bytes((9,))
        + b"FW2.3.4-b"
        + b"\x03\x01"
    )
    frame = jt808.encode_frame(jt808.ATTRIBUTES, bytes.fromhex(PHONE), 3, body)
    decoded = SPEC.decode(frame, ctx())
    (info,) = decoded.messages
    assert info.type == MessageType.INFO
    assert info.attributes["iccid"] == "89860477012070271502"
    assert info.attributes["model"] == "JT-200"
    assert info.attributes["firmware"] == "FW2.3.4-b"
    assert info.attributes["jt808.hardware"] == "HW11"
    assert decoded.reply is None  # the answer to a query is not answered


def test_terminal_general_response():
    body = struct.pack(">HHB", 0x0042, 0x8105, 0)
    frame = jt808.encode_frame(jt808.TERMINAL_RESPONSE, bytes.fromhex(PHONE), 4, body)
    decoded = SPEC.decode(frame, ctx())
    (result,) = decoded.messages
    assert result.type == MessageType.COMMAND_RESULT
    assert result.attributes["result"] == "ok"
    assert result.attributes["jt808.reply_serial"] == 0x42
    assert result.attributes["jt808.reply_id"] == 0x8105
    assert decoded.reply is None


def test_heartbeat_is_acknowledged():
    device = SPEC.device(PHONE)
    out = device.heartbeat()
    decoded = SPEC.decode(out.data, ctx())
    assert [m.type for m in decoded.messages] == [MessageType.HEARTBEAT]
    reply = jt808.open_frame(decoded.reply, lenient=False)
    assert reply.body == struct.pack(">HHB", out.seq, jt808.HEARTBEAT, 0)
    assert device.on_reply(decoded.reply).acked == [out.seq]


def test_platform_serial_counts_per_session():
    device = SPEC.device(PHONE)
    context = ctx()
    serials = [
        jt808.open_frame(SPEC.decode(device.heartbeat().data, context).reply, lenient=False).serial
        for _ in range(3)
    ]
    assert serials == [1, 2, 3]


def test_replies_split_across_reads():
    device = SPEC.device(PHONE)
    first, second = device.heartbeat(), device.heartbeat()
    context = ctx()
    replies = SPEC.decode(first.data, context).reply + SPEC.decode(second.data, context).reply
    assert device.on_reply(replies[:5]).acked == []
    assert device.on_reply(replies[5:]).acked == [first.seq, second.seq]


def test_text_frames_on_the_same_port():
    device = SPEC.device(PHONE)
    heartbeat = device.heartbeat().data
    request = b"(794104004140,1,001,BASE,2,TIME)"
    result = jt808.split(b"(x" + b"\x00" + heartbeat + request + b"(79410")
    assert result.frames == [heartbeat, request]
    assert result.consumed == len(b"(x\x00") + len(heartbeat) + len(request)  # "(79410" waits
    decoded = SPEC.decode(request, ctx())
    assert decoded.messages[0].type == MessageType.TIME_REQUEST
    assert decoded.terminal_id == "794104004140"
    assert decoded.reply == b"(794104004140,1,001,BASE,2,20240501000000)"
    (answer,) = SPEC.decode(b"(794104004140,OK,RELAY,1)", ctx()).messages
    assert answer.type == MessageType.COMMAND_RESULT and answer.attributes["result"] == "OK,RELAY,1"


def test_location_query_answer_and_pass_through():
    phone = bytes.fromhex(PHONE)
    location = jt808.encode_location(fix(), CST)
    frame = jt808.encode_frame(jt808.LOCATION_ANSWER, phone, 5, struct.pack(">H", 0x0102) + location)
    (answer,) = SPEC.decode(frame, ctx()).messages
    assert answer.lat == 22.54321 and answer.attributes["jt808.reply_serial"] == 0x0102
    frame = jt808.encode_frame(jt808.TRANSPARENT, phone, 6, b"\xf0\x01\x02")
    decoded = SPEC.decode(frame, ctx())
    assert decoded.messages[0].attributes["jt808.transparent"] == "0102" and decoded.reply is None


@pytest.mark.parametrize(("request_id", "answer_id"), [(0x0004, 0x8004), (0x0109, 0x8109)])
def test_time_requests_are_answered_in_utc(request_id, answer_id):
    frame = jt808.encode_frame(request_id, bytes.fromhex(PHONE), 5, b"")
    decoded = SPEC.decode(frame, ctx())
    assert decoded.messages[0].type == MessageType.TIME_REQUEST
    answer = jt808.open_frame(decoded.reply, lenient=False)
    assert answer.msg_id == answer_id and answer.body == bytes.fromhex("240501000000")


def test_vendor_photo_is_kept_and_acknowledged():
    frame = jt808.encode_frame(jt808.PHOTO, bytes.fromhex(PHONE), 9, b"\xff\xd8\xff")
    decoded = SPEC.decode(frame, ctx())
    assert decoded.messages[0].attributes["jt808.x8888"] == "ffd8ff"
    assert jt808.open_frame(decoded.reply, lenient=False).body == struct.pack(">HHB", 9, 0x8888, 0)
