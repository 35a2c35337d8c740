"""Teltonika: captured packets, Codec 8 / 8E / 16 records and their IO mapping, the IMEI
handshake, record-count acknowledgements over TCP and UDP, command responses."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from core.messages import Message, MessageType
from gateway.protocols import get_protocol, teltonika
from gateway.protocols.base import ChecksumError, DecodeContext, MalformedFrame, UnsupportedMessage
from tests.protocols.binary_checks import check_capture, check_feedings, decode_session
from tests.protocols.support import load_captures
from tests.protocols.test_checksums import crc_arc_reference

SPEC = get_protocol("teltonika")
CAPTURES = load_captures("teltonika")
IMEI = "356307042441013"
WHEN = datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)


def ctx(**kwargs: object) -> DecodeContext:
    return DecodeContext(**kwargs)  # type: ignore[arg-type]


def fix(**overrides: object) -> Message:
    values: dict[str, object] = dict(
        type=MessageType.POSITION,
        terminal_id=IMEI,
        time=WHEN,
        valid=True,
        lat=-33.7335583,
        lon=-70.7196233,
        speed_kmh=87.0,
        course=61.0,
        altitude_m=446.0,
        satellites=18,
    )
    values.update(overrides)
    return Message(**values)  # type: ignore[arg-type]


def tcp_packet(data: bytes) -> bytes:
    """A TCP AVL packet framed by hand: zero preamble, length, data, CRC-16/ARC in 4 bytes."""
    return b"\x00" * 4 + struct.pack(">I", len(data)) + data + struct.pack(">I", crc_arc_reference(data))


@pytest.mark.parametrize("capture", CAPTURES, ids=str)
def test_captured_packet_decodes_to_expected_values(capture):
    check_capture(SPEC, capture)


def test_captured_values_in_detail():
    by_seq = {c.seq: c for c in CAPTURES}
    records = SPEC.decode(by_seq[5].wire, ctx()).messages
    assert len(records) == 4
    crash = records[0]
    assert crash.alarms == ["accident"] and crash.attributes["event_code"] == 247
    assert crash.satellites == 18 and crash.hdop == 0.6
    assert crash.attributes["gnss_status"] == "fix"
    decoded = SPEC.decode(by_seq[8].wire, ctx())
    assert decoded.reply == struct.pack(">I", 3)
    first = decoded.messages[0]
    assert first.attributes["power_v"] == 12.961
    assert (first.lat, first.lon) == (24.9484381, 67.1363518)
    (command,) = SPEC.decode(by_seq[3].wire, ctx()).messages
    assert command.type == MessageType.COMMAND_RESULT
    assert command.attributes["driver_id"] == "12749884"
    gh3000 = SPEC.decode(by_seq[34].wire, ctx(lenient=True)).messages
    assert gh3000[0].time == datetime(2007, 12, 6, 12, 36, tzinfo=UTC)
    assert gh3000[0].lat == pytest.approx(54.7146873)


def test_captured_packets_through_the_framer():
    frames = [c.wire for c in CAPTURES if c.intact and c.seq not in (41,)]
    check_feedings(SPEC, frames, SPEC.device(IMEI).corrupt_checksum)


def test_framer_cuts_login_keepalive_and_packets():
    device = SPEC.device(IMEI)
    login = device.handshake().data
    packet = device.position(fix()).data
    result = teltonika.split(login + b"\xff" + packet + packet[:10])
    assert result.frames == [login, b"\xff", packet]
    assert result.consumed == len(login) + 1 + len(packet)
    assert teltonika.split(b"\x00\x13garbage!!" + packet).frames == [packet]


def test_framer_resyncs_on_an_impossible_length():
    packet = SPEC.device(IMEI).position(fix()).data
    junk = b"\x00\x00\x00\x00\x7f\x00\x00\x00"  # a 2 GB "packet"
    result = teltonika.split(junk + packet)
    assert result.frames == [packet] and result.garbage == len(junk)


# --------------------------------------------------------------------------- TCP session


def test_imei_handshake_and_acknowledgement_round_trip():
    device = SPEC.device(IMEI)
    login = device.handshake()
    assert login.data == b"\x00\x0f" + IMEI.encode()
    context = ctx()
    decoded = SPEC.decode(login.data, context)
    assert decoded.terminal_id == IMEI and decoded.reply == b"\x01"
    assert device.on_reply(decoded.reply).handshake_done

    first = device.position(fix())
    second = device.positions([fix(), fix(), fix()])
    replies = SPEC.decode(first.data, context).reply + SPEC.decode(second.data, context).reply
    assert replies == b"\x00\x00\x00\x01\x00\x00\x00\x03"  # record counts
    assert device.on_reply(replies[:6]).acked == [first.seq]
    assert device.on_reply(replies[6:]).acked == [second.seq]
    assert SPEC.decode(first.data, context).messages[0].terminal_id == IMEI


def test_rejected_login():
    device = SPEC.device(IMEI)
    device.handshake()
    assert device.on_reply(b"\x00").rejected


def test_keep_alive_gives_nothing():
    assert SPEC.decode(b"\xff", ctx()).messages == []
    assert SPEC.device(IMEI).heartbeat().data == b"\xff"


# --------------------------------------------------------------------------- records


def test_codec_8e_round_trip_with_independent_field_values():
    device = SPEC.device(IMEI)
    message = fix(
        alarms=["power_cut"],
        attributes={
            "ignition": True,
            "motion": True,
            "gnss_status": "fix",
            "gsm_signal": 80,
            "battery_level": 93,
            "power_v": 12.345,
            "battery_v": 4.05,
            "odometer_m": 1234567,
            "iccid": "89370310000012345678",
        },
    )
    out = device.position(message)
    data = out.data[8:-4]
    assert data[:2] == b"\x8e\x01" and data[-1] == 1
    assert out.data[-4:] == struct.pack(">I", crc_arc_reference(data))
    ms, _priority, lon, lat = struct.unpack_from(">QBii", data, 2)
    assert ms == 1714557600250 and lon == -707196233 and lat == -337335583

    (back,) = SPEC.decode(out.data, ctx()).messages
    assert back.time == WHEN
    assert (back.lat, back.lon) == (-33.7335583, -70.7196233)
    assert back.speed_kmh == 87.0 and back.course == 61.0 and back.altitude_m == 446.0
    assert back.satellites == 18 and back.valid
    assert back.alarms == ["power_cut"] and back.attributes["power_cut"] is True
    for key, value in message.attributes.items():
        assert back.attributes[key] == value, key


def test_codec_8_io_mapping():
    ios_1 = [
        (239, 1),
        (240, 0),
        (21, 4),
        (69, 2),
        (113, 77),
        (252, 1),
        (247, 1),
        (249, 1),
        (246, 1),
        (236, 1),
    ]
    ios_2 = [(66, 13800), (67, 3950), (9, 512)]
    ios_4 = [(16, 99000)]
    ios_8 = [(11, 8937031000), (14, 12345678)]
    record = struct.pack(">QBiihHBH", 1714557600000, 1, 252000000, 548000000, 120, 359, 7, 40)
    record += bytes((252, sum(map(len, (ios_1, ios_2, ios_4, ios_8)))))
    for ios, fmt in ((ios_1, "B"), (ios_2, "H"), (ios_4, "I"), (ios_8, "Q")):
        record += bytes((len(ios),)) + b"".join(struct.pack(">B" + fmt, io, v) for io, v in ios)
    packet = tcp_packet(b"\x08\x01" + record + b"\x01")
    (message,) = SPEC.decode(packet, ctx()).messages
    attrs = message.attributes
    assert (message.lat, message.lon) == (54.8, 25.2)
    assert attrs["ignition"] is True and attrs["motion"] is False
    assert attrs["gsm_signal_raw"] == 4 and attrs["gsm_signal"] == 80
    assert attrs["gnss_status"] == "no_fix"
    assert attrs["battery_level"] == 77
    assert attrs["power_v"] == 13.8 and attrs["battery_v"] == 3.95
    assert attrs["odometer_m"] == 99000
    assert attrs["iccid"] == "89370310000012345678"
    assert attrs["teltonika.io9"] == 512
    assert attrs["event_code"] == 252
    assert set(message.alarms) == {"power_cut", "accident", "jamming", "tow", "general"}


def test_codec_16_record():
    record = struct.pack(">QBiihHBH", 1714557600000, 0, 10, 20, 0, 0, 0, 0)
    record += struct.pack(">HBB", 385, 1, 1)  # event id, generation type, total
    record += b"\x01" + struct.pack(">HB", 240, 1) + b"\x00\x00\x00"
    (message,) = SPEC.decode(tcp_packet(b"\x10\x01" + record + b"\x01"), ctx()).messages
    assert message.attributes["motion"] is True and message.attributes["event_code"] == 385
    assert message.valid is False  # no satellites


def test_record_without_fix_is_a_status():
    device = SPEC.device(IMEI)
    out = device.status({"power_v": 11.2, "gnss_status": "no_fix"}, ["jamming"])
    (message,) = SPEC.decode(out.data, ctx()).messages
    assert message.type == MessageType.STATUS and not message.has_fix
    assert message.alarms == ["jamming"] and message.attributes["power_v"] == 11.2


def test_record_counts_must_agree():
    data = teltonika.encode_avl_data([fix()])
    with pytest.raises(MalformedFrame):
        SPEC.decode(teltonika.encode_tcp_packet(data[:-1] + b"\x02"), ctx())


def test_bad_crc_strict_and_lenient():
    device = SPEC.device(IMEI)
    bad = device.corrupt_checksum(device.position(fix()).data)
    with pytest.raises(ChecksumError):
        SPEC.decode(bad, ctx())
    (message,) = SPEC.decode(bad, ctx(lenient=True)).messages
    assert message.attributes["checksum_ok"] is False


def test_unknown_codec_is_unsupported():
    with pytest.raises(UnsupportedMessage):
        SPEC.decode(tcp_packet(b"\x99\x01\x00\x01"), ctx())


# --------------------------------------------------------------------------- commands


def test_codec_12_response():
    text = b"Ver:03.27.07_04 GPS:1 Sat:12"
    data = b"\x0c\x01\x06" + struct.pack(">I", len(text)) + text + b"\x01"
    decoded = SPEC.decode(tcp_packet(data), ctx())
    (result,) = decoded.messages
    assert result.type == MessageType.COMMAND_RESULT and result.attributes["result"] == text.decode()
    assert decoded.reply is None


# --------------------------------------------------------------------------- UDP


def test_udp_round_trip():
    device = SPEC.device(IMEI, transport="udp")
    assert device.handshake() is None
    out = device.positions([fix(), fix(lat=1.0)])
    assert SPEC.split_datagram is not None
    (frame,) = SPEC.split_datagram(out.data).frames
    decoded = SPEC.decode(frame, ctx(transport="udp"))
    assert decoded.terminal_id == IMEI
    assert [m.lat for m in decoded.messages] == [-33.7335583, 1.0]
    assert decoded.reply == struct.pack(">HHBBB", 5, out.seq, 1, out.seq & 0xFF, 2)
    assert device.on_reply(decoded.reply).acked == [out.seq]


def test_udp_packet_from_the_facts_layout():
    data = teltonika.encode_avl_data([fix()])
    body = struct.pack(">HBBH", 0xCAFE, 0x01, 0x07, 15) + IMEI.encode() + data
    datagram = struct.pack(">H", len(body)) + body
    decoded = SPEC.decode(datagram, ctx(transport="udp"))
    assert decoded.reply == bytes.fromhex("0005cafe010701")
    assert decode_session(SPEC, [datagram], transport="udp")[0]["terminal_id"] == IMEI


def test_codec_8_with_two_byte_io_ids():
    record = struct.pack(">QBiihHBH", 1714557600000, 0, 252000000, 548000000, 120, 0, 7, 40)
    record += struct.pack(">HB", 239, 2)  # event id (2 bytes), total
    record += b"\x01" + struct.pack(">HB", 239, 1) + b"\x01" + struct.pack(">HH", 66, 12500) + b"\x00\x00"
    (message,) = SPEC.decode(tcp_packet(b"\x08\x01" + record + b"\x01"), ctx()).messages
    assert message.attributes["ignition"] is True and message.attributes["power_v"] == 12.5
    assert message.attributes["event_code"] == 239
