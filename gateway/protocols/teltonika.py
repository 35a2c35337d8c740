"""Teltonika (Codec 8, 8 Extended, 16, 7 and the Codec 12/13/14 command channel): framer,
decoder, acknowledgements and the terminal side, over TCP and UDP.

TCP: the terminal first sends its IMEI (``len(2)`` + ASCII, answered 0x01), then AVL
packets ``00000000 | data length(4) | codec, N1, records, N2 | CRC-16/IBM(4)`` each
answered with the record count as 4 bytes.  A lone 0xFF is a keep-alive.
UDP: ``len(2) packet id(2) 01 AVL packet id(1) IMEI length(2) IMEI | codec data`` (no CRC),
answered ``0005 | packet id | 01 | AVL packet id | count``.  Record times are UTC.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from core.messages import Message, MessageType
from core.vocabulary import Alarm, Attr
from gateway.protocols.base import (
    ChecksumError,
    DecodeContext,
    Decoded,
    DeviceCodec,
    MalformedFrame,
    Outgoing,
    ProtocolSpec,
    ReplyEvent,
    Split,
    UnsupportedMessage,
)
from gateway.protocols.binary import report_without_fix
from gateway.protocols.checksums import crc16_ibm

MAX_DATA = 16 * 1024  # larger AVL packets are not Teltonika's: resync
MAX_IMEI = 32
KEEP_ALIVE = 0xFF

CODEC_7 = 0x07
CODEC_8 = 0x08
CODEC_8E = 0x8E
CODEC_16 = 0x10
CODEC_12 = 0x0C
CODEC_13 = 0x0D
CODEC_14 = 0x0E
# Codec 8 as some firmwares write it (not on the wire: layouts tried when decoding)
CODEC_8_WIDE_IDS = 0x108  # 2-byte event and IO ids, 1-byte counts
CODEC_8_WIDE = 0x208  # 2-byte event, ids and counts, like 8E without variable-length IO
AVL_CODECS = frozenset({CODEC_7, CODEC_8, CODEC_8E, CODEC_16})
COMMAND_CODECS = frozenset({CODEC_12, CODEC_13, CODEC_14})
TYPE_RESPONSE = 0x06

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_PREAMBLE = struct.Struct(">II")
_RECORD = struct.Struct(">QBiihHBH")  # time ms, priority, lon, lat, altitude, angle, sats, speed
_UDP_HEAD = struct.Struct(">HHBBH")  # length, packet id, 0x01, AVL packet id, IMEI length
GH3000_EPOCH = datetime(2007, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VALUE_FORMATS = ("B", "H", "I", "Q")

# --------------------------------------------------------------------------- framing


def split(buffer: bytes) -> Split:
    """TCP framing: keep-alive byte, IMEI login, or an AVL packet sized by its header."""
    frames: list[bytes] = []
    garbage = 0
    pos = 0
    size = len(buffer)
    while pos < size:
        if buffer[pos] == KEEP_ALIVE:
            frames.append(buffer[pos : pos + 1])
            pos += 1
            continue
        if size - pos < 2:
            break
        length = _U16.unpack_from(buffer, pos)[0]
        if length:
            if length > MAX_IMEI:
                garbage += 1
                pos += 1
                continue
            if size - pos < length + 2:
                break
            if not buffer[pos + 2 : pos + 2 + length].isdigit():
                garbage += 1
                pos += 1
                continue
            frames.append(buffer[pos : pos + 2 + length])
            pos += 2 + length
            continue
        if size - pos < 8:
            break
        zero, data_length = _PREAMBLE.unpack_from(buffer, pos)
        if zero or not 3 <= data_length <= MAX_DATA:
            garbage += 1
            pos += 1
            continue
        end = pos + 12 + data_length
        if end > size:
            break
        frames.append(buffer[pos:end])
        pos = end
    return Split(pos, frames, garbage)


def split_datagram(buffer: bytes) -> Split:
    """A UDP datagram is one frame."""
    return Split(len(buffer), [bytes(buffer)] if buffer else [])


# --------------------------------------------------------------------------- IO elements

GNSS_STATUS = {0: "off", 1: "fix", 2: "no_fix", 3: "sleep"}
GNSS_STATUS_CODES = {name: code for code, name in GNSS_STATUS.items()}
# IO id -> (attribute key, divisor); None keeps the integer, bool makes it a flag.
SIMPLE_IO: dict[int, tuple[str, Any]] = {
    66: (Attr.POWER_V, 1000),  # mV
    67: (Attr.BATTERY_V, 1000),  # mV
    16: (Attr.ODOMETER_M, None),
    113: (Attr.BATTERY_LEVEL, None),
    239: (Attr.IGNITION, bool),
    240: (Attr.MOTION, bool),
    181: (Attr.PDOP, 10),
}
# IO id -> the alarm a non-zero value raises.
ALARM_IO: dict[int, str] = {
    252: Alarm.POWER_CUT,  # unplug
    247: Alarm.ACCIDENT,  # crash detection
    249: Alarm.JAMMING,
    246: Alarm.TOW,
    236: Alarm.GENERAL,
}
KNOWN_IO = frozenset({*SIMPLE_IO, *ALARM_IO, 21, 69, 72, 182, 199, 253})
GREEN_DRIVING = {1: Alarm.HARSH_ACCELERATION, 2: Alarm.HARSH_BRAKING, 3: Alarm.HARSH_CORNERING}
_RAW_KEYS: dict[int, str] = {io: f"teltonika.io{io}" for io in range(256)}


def _raw_key(io: int) -> str:
    key = _RAW_KEYS.get(io)
    if key is None:
        key = f"teltonika.io{io}"
        if len(_RAW_KEYS) < 4096:
            _RAW_KEYS[io] = key
    return key


_HDOP_SCRATCH = "teltonika._hdop"  # carried to Message.hdop, not kept as an attribute
_ICCID_1 = "teltonika.io11"
_ICCID_2 = "teltonika.io14"


def _apply_io(io: int, value: int, attrs: dict[str, Any], alarms: list[str]) -> None:
    """One IO element with a shared meaning (see KNOWN_IO) into attributes and alarms."""
    simple = SIMPLE_IO.get(io)
    if simple is not None:
        key, divisor = simple
        if divisor is None:
            attrs[key] = value
        elif divisor is bool:
            attrs[key] = bool(value)
        else:
            attrs[key] = value / divisor
        return
    alarm = ALARM_IO.get(io)
    if alarm is not None:
        attrs[_raw_key(io)] = value
        if value:
            alarms.append(alarm)
        if io == 252:
            attrs[Attr.POWER_CUT] = bool(value)
        return
    if io == 21:
        attrs[Attr.GSM_SIGNAL_RAW] = value
        if value <= 5:
            attrs[Attr.GSM_SIGNAL] = value * 20
    elif io == 69:
        attrs[Attr.GNSS_STATUS] = GNSS_STATUS.get(value, str(value))
    elif io == 182:
        attrs[_HDOP_SCRATCH] = value / 10
    elif io == 199:
        attrs[_raw_key(io)] = value
        attrs.setdefault(Attr.ODOMETER_M, value)
    elif io == 72:  # Dallas temperature: signed, 0.1 degree
        attrs[Attr.TEMPERATURE_C] = (value - (1 << 32) if value >= 1 << 31 else value) / 10
    elif io == 253:
        attrs[_raw_key(io)] = value
        green = GREEN_DRIVING.get(value)
        if green:
            alarms.append(green)
    else:
        attrs[_raw_key(io)] = value


def _finish_iccid(attrs: dict[str, Any]) -> None:
    """ICCID in IO 11 (leading digits) and, on some devices, IO 14 (last ten digits)."""
    first = attrs.pop(_ICCID_1, None)
    second = attrs.pop(_ICCID_2, None)
    if first is not None and second is not None:
        attrs[Attr.ICCID] = f"{first}{second:010d}"
    elif first is not None or second is not None:
        attrs[Attr.ICCID] = str(first if first is not None else second)


# IO group structs: [id format][value format index] -> {count: Struct}
_PAIR_STRUCTS: dict[str, tuple[dict[int, struct.Struct], ...]] = {
    id_format: tuple({} for _ in VALUE_FORMATS) for id_format in ("B", "H")
}


def _pairs(id_format: str, group: int, count: int) -> struct.Struct:
    table = _PAIR_STRUCTS[id_format][group]
    compiled = table.get(count)
    if compiled is None:
        compiled = struct.Struct(">" + (id_format + VALUE_FORMATS[group]) * count)
        if len(table) < 1024:
            table[count] = compiled
    return compiled


# --------------------------------------------------------------------------- records


_from_timestamp = datetime.fromtimestamp
_POSITION = MessageType.POSITION
_STATUS = MessageType.STATUS
_EVENT_8E = struct.Struct(">HH")
_EVENT_16 = struct.Struct(">HBB")
_NX = struct.Struct(">HH")
_EVENT_CODE = Attr.EVENT_CODE


def _read_record(data: bytes, pos: int, codec: int, terminal_id: str | None) -> tuple[Message, int]:
    """One Codec 8 / 8E / 16 record at ``pos``; returns it and the position after it."""
    ms, priority, lon_raw, lat_raw, altitude, angle, satellites, speed = _RECORD.unpack_from(data, pos)
    pos += 24
    if codec == CODEC_8:
        event = data[pos]
        pos += 2
        id_format = "B"
        wide_counts = False
    elif codec in (CODEC_8E, CODEC_8_WIDE):
        event = _EVENT_8E.unpack_from(data, pos)[0]
        pos += 4
        id_format = "H"
        wide_counts = True
    elif codec == CODEC_8_WIDE_IDS:
        event = _U16.unpack_from(data, pos)[0]
        pos += 3
        id_format = "H"
        wide_counts = False
    else:
        event = _EVENT_16.unpack_from(data, pos)[0]
        pos += 4
        id_format = "H"
        wide_counts = False
    attrs: dict[str, Any] = {_EVENT_CODE: event}
    if priority:
        attrs["teltonika.priority"] = priority
    alarms: list[str] = []
    known = KNOWN_IO
    simple_io = SIMPLE_IO
    raw_keys = _RAW_KEYS
    structs = _PAIR_STRUCTS[id_format]
    for group in (0, 1, 2, 3):
        if wide_counts:
            count = _U16.unpack_from(data, pos)[0]
            pos += 2
        else:
            count = data[pos]
            pos += 1
        if not count:
            continue
        pairs = structs[group].get(count) or _pairs(id_format, group, count)
        values = iter(pairs.unpack_from(data, pos))
        pos += pairs.size
        for io, value in zip(values, values, strict=True):
            # unknown ids are most of a record: stored raw without a call; the common
            # known ones (power, battery, odometer, ignition) without one either
            if io in known:
                simple = simple_io.get(io)
                if simple is None:
                    _apply_io(io, value, attrs, alarms)
                else:
                    key, divisor = simple
                    if divisor is None:
                        attrs[key] = value
                    elif divisor is bool:
                        attrs[key] = value != 0
                    else:
                        attrs[key] = value / divisor
            else:
                raw_key = raw_keys.get(io)
                attrs[raw_key if raw_key is not None else _raw_key(io)] = value
    if codec == CODEC_8E:
        (count,) = _U16.unpack_from(data, pos)
        pos += 2
        for _ in range(count):
            io, length = _NX.unpack_from(data, pos)
            pos += 4
            if pos + length > len(data):
                raise MalformedFrame("variable-length IO element runs past the packet")
            attrs[_raw_key(io)] = data[pos : pos + length].hex()
            pos += length
    if _ICCID_1 in attrs or _ICCID_2 in attrs:
        _finish_iccid(attrs)
    hdop = attrs.pop(_HDOP_SCRATCH, None)
    valid = satellites != 0
    if satellites > 64:  # some old firmwares put other bits here: not a satellite count
        attrs["teltonika.satellites_raw"] = satellites
        satellites = None
    lat: float | None = lat_raw / 1e7
    lon: float | None = lon_raw / 1e7
    if not valid and not lat_raw and not lon_raw:
        lat = lon = None
    try:
        time = _from_timestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MalformedFrame(f"record time {ms} ms out of range") from exc
    message = Message(
        _POSITION if lat is not None else _STATUS,
        terminal_id,
        time,
        valid,
        lat,
        lon,
        float(speed),
        float(angle % 360),
        float(altitude),
        satellites,
        hdop,
        alarms,
        attrs,
    )
    return message, pos


def _read_gh3000_record(data: bytes, pos: int, terminal_id: str | None) -> tuple[Message, int]:
    """Codec 7 (GH3000): seconds since 2007 with the priority in the top bits, then masked
    GPS fields and IO groups of 1-, 2- and 4-byte values."""
    (stamp,) = _U32.unpack_from(data, pos)
    pos += 4
    time = GH3000_EPOCH + timedelta(seconds=stamp & 0x3FFFFFFF)
    attrs: dict[str, Any] = {}
    if stamp >> 30:
        attrs["teltonika.priority"] = stamp >> 30
    message = Message(MessageType.STATUS, terminal_id, time, False, attributes=attrs)
    mask = data[pos]
    pos += 1
    if mask & 0x01:
        gps_mask = data[pos]
        pos += 1
        if gps_mask & 0x01:
            lat, lon = struct.unpack_from(">ff", data, pos)
            pos += 8
            if -90 <= lat <= 90 and -180 <= lon <= 180:
                message.lat, message.lon = round(lat, 7), round(lon, 7)
                message.type = MessageType.POSITION
        if gps_mask & 0x02:
            message.altitude_m = float(_U16.unpack_from(data, pos)[0])
            pos += 2
        if gps_mask & 0x04:
            message.course = round(data[pos] * 360 / 256, 1)
            pos += 1
        if gps_mask & 0x08:
            message.speed_kmh = float(data[pos])
            pos += 1
        if gps_mask & 0x10:
            message.satellites = data[pos]
            pos += 1
        if gps_mask & 0x20:
            lac, cid = struct.unpack_from(">HH", data, pos)
            attrs[Attr.CELL] = {"lac": lac, "cid": cid}
            pos += 4
        if gps_mask & 0x40:
            attrs[Attr.GSM_SIGNAL_RAW] = data[pos]
            pos += 1
        if gps_mask & 0x80:
            attrs["teltonika.operator"] = _U32.unpack_from(data, pos)[0]
            pos += 4
    message.valid = message.lat is not None and bool(message.satellites)
    for bit, group in ((0x02, 0), (0x04, 1), (0x08, 2)):
        if mask & bit:
            count = data[pos]
            pos += 1
            pairs = _pairs("B", group, count)
            values = pairs.unpack_from(data, pos)
            pos += pairs.size
            for io, value in zip(values[::2], values[1::2], strict=True):
                _apply_io(io, value, attrs, message.alarms)
    _finish_iccid(attrs)
    attrs.pop(_HDOP_SCRATCH, None)
    return message, pos


def decode_records(data: bytes, terminal_id: str | None, lenient: bool) -> list[Message]:
    """``codec, N1, records, N2`` of an AVL packet (TCP data or UDP payload).

    Some Codec 8 firmwares write 2-byte IO ids (Traccar's "extended" option): when the
    standard layout does not fit the packet exactly, those layouts are tried before the
    packet is refused (or, leniently, read as far as it goes)."""
    if len(data) < 3:
        raise MalformedFrame("AVL data shorter than codec and counts")
    codec = data[0]
    if codec != CODEC_8:  # one layout
        try:
            return _read_records(data, codec, terminal_id, strict=True)
        except MalformedFrame:
            if not lenient:
                raise
        return _read_records(data, codec, terminal_id, strict=False)
    layouts = (CODEC_8, CODEC_8_WIDE_IDS, CODEC_8_WIDE)
    errors: list[MalformedFrame] = []
    for layout in layouts:
        try:
            return _read_records(data, layout, terminal_id, strict=True)
        except MalformedFrame as exc:
            errors.append(exc)
    if lenient:
        return _read_records(data, codec, terminal_id, strict=False)
    raise errors[0]


def _read_records(data: bytes, layout: int, terminal_id: str | None, *, strict: bool) -> list[Message]:
    count = data[1]
    pos = 2
    messages = []
    try:
        for _ in range(count):
            if layout == CODEC_7:
                message, pos = _read_gh3000_record(data, pos, terminal_id)
            else:
                message, pos = _read_record(data, pos, layout, terminal_id)
            messages.append(message)
    except (struct.error, IndexError) as exc:
        if strict or not messages:
            raise MalformedFrame(f"record {len(messages) + 1} of {count} truncated") from exc
    if strict and (pos != len(data) - 1 or data[-1] != count):
        raise MalformedFrame(f"record counts differ or trailing bytes: N1={count}, end at {pos}/{len(data)}")
    return messages


def decode_command(data: bytes, terminal_id: str | None) -> list[Message]:
    """Codec 12/13/14: a command response (type 6) or other device-to-server payload."""
    if len(data) < 8:
        raise MalformedFrame("command packet truncated")
    codec, _count, kind = data[0], data[1], data[2]
    (size,) = _U32.unpack_from(data, 3)
    payload = data[7 : 7 + size]
    attrs: dict[str, Any] = {}
    if codec == CODEC_13 and len(payload) >= 4:
        attrs["teltonika.device_time"] = _U32.unpack_from(payload)[0]
        payload = payload[4:]
    elif codec == CODEC_14 and len(payload) >= 8:
        attrs["teltonika.imei"] = payload[:8].hex().lstrip("0")
        payload = payload[8:]
    if kind != TYPE_RESPONSE:
        attrs["teltonika.type"] = kind
        attrs["teltonika.size"] = size
        return [Message(MessageType.INFO, terminal_id, attributes=attrs)]
    text = payload.decode("utf-8", "replace").strip("\x00\r\n ")
    attrs[Attr.RESULT] = text
    if text.startswith("GTSL|"):
        fields = text.split("|")
        if len(fields) > 4 and fields[4]:
            attrs[Attr.DRIVER_ID] = fields[4]
    return [Message(MessageType.COMMAND_RESULT, terminal_id, attributes=attrs)]


def _decode_data(data: bytes, terminal_id: str | None, lenient: bool) -> list[Message]:
    codec = data[0]
    if codec in AVL_CODECS:
        return decode_records(data, terminal_id, lenient)
    if codec in COMMAND_CODECS:
        return decode_command(data, terminal_id)
    raise UnsupportedMessage(f"codec 0x{codec:02x}")


# --------------------------------------------------------------------------- decoding


def _terminal_id(ctx: DecodeContext) -> str | None:
    return ctx.terminal_id or ctx.state.get("teltonika.imei")


def _decode_tcp(frame: bytes, ctx: DecodeContext) -> Decoded:
    if len(frame) == 1 and frame[0] == KEEP_ALIVE:
        return Decoded([])
    if len(frame) < 2:
        raise MalformedFrame("frame shorter than 2 bytes")
    length = _U16.unpack_from(frame)[0]
    if length:
        imei = frame[2:]
        if len(imei) != length or not imei.isdigit():
            raise MalformedFrame("IMEI login is not a length and ASCII digits")
        terminal_id = imei.decode("ascii")
        ctx.state["teltonika.imei"] = terminal_id
        return Decoded([Message(MessageType.LOGIN, terminal_id)], b"\x01", terminal_id)
    if len(frame) < 12:
        raise MalformedFrame("AVL packet shorter than its header")
    zero, data_length = _PREAMBLE.unpack_from(frame)
    if zero:
        raise MalformedFrame("AVL packet without the zero preamble")
    if len(frame) == data_length + 12:
        data = frame[8:-4]
        expected = _U32.unpack_from(frame, len(frame) - 4)[0]
        actual = crc16_ibm(data)
        checksum_ok = actual == expected
        if not checksum_ok and not ctx.lenient:
            raise ChecksumError(f"crc {actual:04x} != {expected:04x}")
    elif not ctx.lenient:
        raise ChecksumError(f"data length {data_length} does not match a {len(frame)}-byte frame")
    else:
        data = frame[8:-4]  # assume the CRC is the tail, whatever the length field says
        checksum_ok = False
    if not data:
        raise MalformedFrame("AVL packet without data")
    messages = _decode_data(data, _terminal_id(ctx), ctx.lenient)
    if not checksum_ok:
        for message in messages:
            message.attributes[Attr.CHECKSUM_OK] = False
    reply = _U32.pack(data[1]) if data[0] in AVL_CODECS else None
    return Decoded(messages, reply)


def udp_ack(packet_id: int, avl_packet_id: int, count: int) -> bytes:
    return struct.pack(">HHBBB", 5, packet_id, 0x01, avl_packet_id, count)


def _decode_udp(frame: bytes, ctx: DecodeContext) -> Decoded:
    if len(frame) < 8:
        raise MalformedFrame("UDP packet shorter than its header")
    length, packet_id, _kind, avl_packet_id, imei_length = _UDP_HEAD.unpack_from(frame)
    if length != len(frame) - 2 and not ctx.lenient:
        raise MalformedFrame(f"UDP length {length} does not match {len(frame) - 2}")
    imei = frame[8 : 8 + imei_length]
    if not imei.isdigit():
        raise MalformedFrame("UDP packet without an ASCII IMEI")
    terminal_id = imei.decode("ascii")
    data = frame[8 + imei_length :]
    if not data:
        raise MalformedFrame("UDP packet without AVL data")
    messages = _decode_data(data, terminal_id, ctx.lenient)
    return Decoded(messages, udp_ack(packet_id, avl_packet_id, data[1]), terminal_id)


def decode(frame: bytes, ctx: DecodeContext) -> Decoded:
    try:
        if ctx.transport == "udp":
            return _decode_udp(frame, ctx)
        return _decode_tcp(frame, ctx)
    except (struct.error, IndexError) as exc:
        raise MalformedFrame(str(exc)) from exc


# --------------------------------------------------------------------------- terminal side


def encode_tcp_packet(data: bytes) -> bytes:
    return _PREAMBLE.pack(0, len(data)) + data + _U32.pack(crc16_ibm(data))


def encode_udp_packet(imei: str, packet_id: int, avl_packet_id: int, data: bytes) -> bytes:
    body = struct.pack(">HBBH", packet_id, 0x01, avl_packet_id, len(imei)) + imei.encode("ascii") + data
    return _U16.pack(len(body)) + body


def _io_elements(message: Message) -> tuple[int, list[list[tuple[int, int]]]]:
    """The event id and the 1/2/4/8-byte IO groups that carry a message's attributes."""
    attrs = message.attributes
    groups: list[list[tuple[int, int]]] = [[], [], [], []]
    if attrs.get(Attr.IGNITION) is not None:
        groups[0].append((239, int(bool(attrs[Attr.IGNITION]))))
    if attrs.get(Attr.MOTION) is not None:
        groups[0].append((240, int(bool(attrs[Attr.MOTION]))))
    if attrs.get(Attr.GNSS_STATUS) in GNSS_STATUS_CODES:
        groups[0].append((69, GNSS_STATUS_CODES[attrs[Attr.GNSS_STATUS]]))
    signal = attrs.get(Attr.GSM_SIGNAL_RAW)
    if signal is None and attrs.get(Attr.GSM_SIGNAL) is not None:
        signal = round(attrs[Attr.GSM_SIGNAL] / 20)
    if signal is not None:
        groups[0].append((21, max(0, min(5, int(signal)))))
    if attrs.get(Attr.BATTERY_LEVEL) is not None:
        groups[0].append((113, max(0, min(100, round(attrs[Attr.BATTERY_LEVEL])))))
    event = 0
    for io, name in ALARM_IO.items():
        if name in message.alarms:
            groups[0].append((io, 1))
            event = event or io
    if attrs.get(Attr.POWER_CUT) and Alarm.POWER_CUT not in message.alarms:
        groups[0].append((252, 1))
    if attrs.get(Attr.POWER_V) is not None:
        groups[1].append((66, round(attrs[Attr.POWER_V] * 1000)))
    if attrs.get(Attr.BATTERY_V) is not None:
        groups[1].append((67, round(attrs[Attr.BATTERY_V] * 1000)))
    if attrs.get(Attr.ODOMETER_M) is not None:
        groups[2].append((16, round(attrs[Attr.ODOMETER_M])))
    iccid = str(attrs.get(Attr.ICCID) or "")
    if iccid.isdigit() and len(iccid) > 10:
        groups[3].append((11, int(iccid[:-10])))
        groups[3].append((14, int(iccid[-10:])))
    return event, groups


def encode_record(message: Message) -> bytes:
    """One Codec 8 Extended record."""
    event, groups = _io_elements(message)
    time = message.time or datetime.now(UTC)
    record = _RECORD.pack(
        round(time.timestamp() * 1000),
        2 if message.alarms else 0,
        round((message.lon or 0.0) * 1e7),
        round((message.lat or 0.0) * 1e7),
        round(message.altitude_m or 0),
        round(message.course or 0) % 360,
        (message.satellites or 0) if message.valid else 0,
        round(message.speed_kmh or 0),
    )
    record += struct.pack(">HH", event, sum(len(group) for group in groups))
    for group, value_format in zip(groups, VALUE_FORMATS, strict=True):
        record += _U16.pack(len(group))
        for io, value in group:
            record += struct.pack(">H" + value_format, io, value)
    return record + b"\x00\x00"  # no variable-length elements


def encode_avl_data(messages: list[Message]) -> bytes:
    count = len(messages)
    return bytes((CODEC_8E, count)) + b"".join(encode_record(m) for m in messages) + bytes((count,))


class TeltonikaDevice(DeviceCodec):
    """An FMB-style terminal sending Codec 8 Extended over TCP (after its IMEI) or UDP."""

    protocol = "teltonika"

    def __init__(self, terminal_id: str, *, tz: Any = UTC, transport: str = "tcp") -> None:
        super().__init__(terminal_id, tz=tz, transport=transport)
        self._outstanding: list[int] = []  # seqs of TCP packets awaiting their count
        self._buffer = b""
        self._logged_in = transport == "udp"

    def handshake(self) -> Outgoing | None:
        if self.transport == "udp":
            return None
        imei = self.terminal_id.encode("ascii")
        return Outgoing(_U16.pack(len(imei)) + imei, None)

    def _packet(self, messages: list[Message]) -> Outgoing:
        seq = self.next_seq()
        data = encode_avl_data(messages)
        if self.transport == "udp":
            return Outgoing(encode_udp_packet(self.terminal_id, seq, seq & 0xFF, data), seq)
        self._outstanding.append(seq)
        return Outgoing(encode_tcp_packet(data), seq)

    def position(self, message: Message) -> Outgoing:
        return self._packet([message])

    def positions(self, messages: list[Message]) -> Outgoing:
        return self._packet(messages)

    def heartbeat(self, attributes: Mapping[str, Any] | None = None) -> Outgoing | None:
        if self.transport == "udp":
            return None  # the keep-alive byte is a TCP thing; over UDP the records are the sign of life
        return Outgoing(bytes((KEEP_ALIVE,)), None, needs_ack=False)

    def status(self, attributes: Mapping[str, Any], alarms: list[str]) -> Outgoing:
        """A record without a fix (no satellites, zero coordinates) carrying the IO state."""
        return self._packet([report_without_fix(self.terminal_id, attributes, alarms)])

    def on_reply(self, data: bytes) -> ReplyEvent:
        event = ReplyEvent()
        if self.transport == "udp":
            if len(data) >= 7:
                _length, packet_id, _kind, _avl, _count = struct.unpack_from(">HHBBB", data)
                event.acked.append(packet_id)
            return event
        buffer = self._buffer + data
        if not self._logged_in and buffer:
            if buffer[0] == 0x01:
                self._logged_in = True
                event.handshake_done = True
            else:
                event.rejected = True
            buffer = buffer[1:]
        while len(buffer) >= 4 and self._outstanding:
            buffer = buffer[4:]
            event.acked.append(self._outstanding.pop(0))
        self._buffer = buffer if self._outstanding else b""
        return event

    def corrupt_checksum(self, frame: bytes) -> bytes:
        if len(frame) < 12 or frame[:4] != b"\x00\x00\x00\x00":
            return frame  # IMEI, keep-alive and UDP packets carry no CRC
        return frame[:-2] + bytes((frame[-2] ^ 0xFF, frame[-1] ^ 0xFF))


SPEC = ProtocolSpec(
    name="teltonika",
    split=split,
    decode=decode,
    default_port=5027,
    transports=frozenset({"tcp", "udp"}),
    default_tz="UTC",
    max_frame=4096,
    split_datagram=split_datagram,
    device=TeltonikaDevice,
)
