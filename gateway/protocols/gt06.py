"""GT06 / Concox: framer, decoder, server replies and the terminal side.

Wire frame: ``78 78 | len(1) | protocol(1) content serial(2) crc(2) | 0D 0A`` or the long
form ``79 79 | len(2) | ...``; ``len`` counts protocol through CRC, and the CRC-ITU covers
the length field through the serial.  Wi-Fi packets put an AP count where the length
belongs, so when ``0D 0A`` is not where the length says the framer cuts at the first
``0D 0A`` instead; such frames carry no checkable CRC.  Device clocks are UTC unless the
terminal's setting (``ctx.tz``) or its login says otherwise.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from core.messages import Message, MessageType
from core.vocabulary import Alarm, Attr
from gateway.protocols.base import (
    ChecksumError,
    DecodeContext,
    Decoded,
    DeviceCodec,
    FramingError,
    MalformedFrame,
    Outgoing,
    ProtocolSpec,
    ReplyEvent,
    Split,
    UnsupportedMessage,
    parse_tz,
)
from gateway.protocols.binary import BCD, bcd_encode, device_time, digits_of, to_device_clock
from gateway.protocols.checksums import crc_itu

SHORT = b"\x78\x78"
LONG = b"\x79\x79"
END = b"\r\n"
MAX_FRAME = 2048
SCAN_LIMIT = 1024  # how far past a broken length the framer looks for 0D 0A

# Protocol numbers
LOGIN = 0x01
GPS = 0x10
GPS_LBS_6 = 0x11
GPS_LBS = 0x12
STATUS = 0x13
STRING = 0x15
ALARM = 0x16
WIFI = 0x17
LBS_STATUS = 0x19
GPS_PHONE = 0x1A
GPS_LBS_EXTEND = 0x1E
STRING_INFO = 0x21
GPS_LBS_2 = 0x22
HEARTBEAT = 0x23
ALARM_2 = 0x26
ADDRESS_REQUEST = 0x2A
ALARM_3 = 0x27
GPS_LBS_3 = 0x2D
GPS_LBS_4 = 0x31
GPS_LBS_STATUS_4 = 0x32
ALARM_4 = 0x33
X1_GPS = 0x34
GPS_LBS_5 = 0x37
WIFI_2 = 0x69
COMMAND_REPLY = 0x81
TIME_REQUEST = 0x8A
INFO = 0x94
ALARM_JC100 = 0x95
GPS_4G = 0xA0
FENCE_SINGLE = 0xA3
FENCE_MULTI = 0xA4
LBS_ALARM_4G = 0xA5

_GPS = struct.Struct(">6BBIIBH")  # date-time, satellites, lat, lon, speed, course/status
_GPS_NO_TIME = struct.Struct(">BIIBH")
_HEADER_LONG = struct.Struct(">H")
_U16 = struct.Struct(">H")
_CELL = struct.Struct(">HBHBH")  # MCC, MNC, LAC, cell id high byte and low word

COURSE_NORTH = 0x0400
COURSE_WEST = 0x0800
COURSE_VALID = 0x1000
COURSE_HAS_ACC = 0x4000
COURSE_ACC = 0x8000

# Alarm codes of the alarm/language byte.
ALARM_CODES: dict[int, str] = {
    0x01: Alarm.SOS,
    0x02: Alarm.POWER_CUT,
    0x03: Alarm.VIBRATION,
    0x04: Alarm.GEOFENCE_ENTER,
    0x05: Alarm.GEOFENCE_EXIT,
    0x06: Alarm.OVERSPEED,
    0x09: Alarm.VIBRATION,
    0x0E: Alarm.LOW_BATTERY,
    0x0F: Alarm.LOW_BATTERY,
    0x11: Alarm.POWER_CUT,  # power off
    0x13: Alarm.TAMPER,
    0x14: Alarm.DOOR,
    0x23: Alarm.FALL_DOWN,
    0x29: Alarm.HARSH_ACCELERATION,
    0x2A: Alarm.HARSH_CORNERING,
    0x2B: Alarm.HARSH_CORNERING,
    0x2C: Alarm.ACCIDENT,
    0x30: Alarm.HARSH_BRAKING,
}
ALARM_TO_CODE: dict[str, int] = {}
for _code, _name in ALARM_CODES.items():
    ALARM_TO_CODE.setdefault(_name, _code)

# Alarm in bits 3-5 of the terminal information byte.
INFO_ALARMS: dict[int, str] = {
    1: Alarm.VIBRATION,
    2: Alarm.POWER_CUT,
    3: Alarm.LOW_BATTERY,
    4: Alarm.SOS,
    6: Alarm.GEOFENCE,
    7: Alarm.TAMPER,  # removed from the vehicle
}

# JC100 dashcam alarm types (0x95).
JC100_ALARMS: dict[int, str] = {
    0x90: Alarm.HARSH_ACCELERATION,
    0x91: Alarm.HARSH_BRAKING,
    0x92: Alarm.HARSH_CORNERING,
    0x93: Alarm.ACCIDENT,
    0x10: Alarm.SOS,
}

# --------------------------------------------------------------------------- framing


def _frame_end(buffer: bytes, start: int) -> int:
    """End (exclusive) of the frame at ``start``; 0: need more bytes; -1: not a frame."""
    size = len(buffer)
    if buffer[start] == 0x78:
        if size - start < 3:
            return 0
        total = buffer[start + 2] + 5
    else:
        if size - start < 4:
            return 0
        total = _HEADER_LONG.unpack_from(buffer, start + 2)[0] + 6
    if total <= MAX_FRAME:
        end = start + total
        if end > size:
            return 0
        if buffer[end - 2 : end] == END:
            return end
        if total >= 7 and buffer[end - 4 : end - 2] == END:
            return end - 2
    # The length is not where the frame ends (Wi-Fi AP count, edited frame): cut at 0D 0A.
    found = buffer.find(END, start + 3, start + SCAN_LIMIT)
    if found >= 0:
        return found + 2
    return 0 if size - start < SCAN_LIMIT else -1


def split(buffer: bytes) -> Split:
    frames: list[bytes] = []
    garbage = 0
    pos = 0
    size = len(buffer)
    while pos < size:
        short = buffer.find(SHORT, pos)
        long = buffer.find(LONG, pos)
        start = short if long < 0 or (0 <= short < long) else long
        if start < 0:
            # keep a last byte that may begin a start marker
            keep = 1 if buffer[-1] in (0x78, 0x79) else 0
            garbage += size - pos - keep
            pos = size - keep
            break
        garbage += start - pos
        end = _frame_end(buffer, start)
        if end == 0:
            pos = start
            break
        if end < 0:
            garbage += 2
            pos = start + 2
            continue
        frames.append(buffer[start:end])
        pos = end
    return Split(pos, frames, garbage)


# --------------------------------------------------------------------------- packets


def encode_packet(protocol: int, content: bytes, serial: int, *, long: bool = False) -> bytes:
    """One wire frame: start bits, length, protocol, content, serial, CRC-ITU, 0D 0A."""
    length = len(content) + 5
    if long or length > 0xFF:
        head = _HEADER_LONG.pack(length)
        start = LONG
    else:
        head = bytes((length,))
        start = SHORT
    covered = head + bytes((protocol,)) + content + _U16.pack(serial & 0xFFFF)
    return start + covered + _U16.pack(crc_itu(covered)) + END


class Packet:
    """A GT06 frame after the CRC check: protocol, content, serial."""

    __slots__ = ("protocol", "content", "serial", "checksum_ok")

    def __init__(self, protocol: int, content: bytes, serial: int | None, checksum_ok: bool) -> None:
        self.protocol = protocol
        self.content = content
        self.serial = serial
        self.checksum_ok = checksum_ok


def open_packet(frame: bytes, lenient: bool) -> Packet:
    size = len(frame)
    if size < 6 or (frame[-2:] != END and not lenient):
        raise FramingError("not a GT06 frame (no 0D 0A)")
    if frame[0] == 0x78 and frame[1] == 0x78:
        header = 3
        length = frame[2]
    elif frame[0] == 0x79 and frame[1] == 0x79:
        header = 4
        length = _HEADER_LONG.unpack_from(frame, 2)[0]
    else:
        raise FramingError("not a GT06 frame (no 7878/7979)")
    if size < header + 1 + 2:
        raise MalformedFrame("frame too short")
    protocol = frame[header]
    if header + length + 2 == size and length >= 5:
        crc_end = size - 4
        expected = (frame[crc_end] << 8) | frame[crc_end + 1]
        actual = crc_itu(frame[2:crc_end])
        checksum_ok = actual == expected
        if not checksum_ok and not lenient:
            raise ChecksumError(f"crc {actual:04x} != {expected:04x}")
        (serial,) = _U16.unpack_from(frame, crc_end - 2)
        return Packet(protocol, frame[header + 1 : crc_end - 2], serial, checksum_ok)
    # The length does not match the frame (a Wi-Fi AP count, a truncated or edited frame):
    # no CRC can be checked.
    if not lenient:
        raise ChecksumError(f"length {length} does not match a {size}-byte frame: CRC not checkable")
    return Packet(protocol, frame[header + 1 : -2 if frame[-2:] == END else size], None, False)


def reply(protocol: int, serial: int | None, content: bytes = b"") -> bytes:
    return encode_packet(protocol, content, serial or 0)


# --------------------------------------------------------------------------- field readers


def _session_tz(ctx: DecodeContext) -> tzinfo:
    return ctx.state.get("gt06.tz") or ctx.tz


def _terminal_id(ctx: DecodeContext) -> str | None:
    return ctx.terminal_id or ctx.state.get("gt06.imei")


_CLOCK = struct.Struct(">6B")


def _gps_time(data: bytes, pos: int, tz: tzinfo) -> datetime | None:
    year, month, day, hour, minute, second = _CLOCK.unpack_from(data, pos)
    if not (year or month or day):
        return None  # the device has no clock yet
    return device_time(2000 + year, month, day, hour, minute, second, tz)


def read_gps(data: bytes, pos: int, ctx: DecodeContext, kind: MessageType = MessageType.POSITION) -> Message:
    """The 18-byte GPS block at ``pos``: time, satellites, lat, lon, speed, course/status."""
    if len(data) < pos + 18:
        raise MalformedFrame("GPS block truncated")
    time = _gps_time(data, pos, _session_tz(ctx))
    message = _read_fix(data, pos + 6, ctx, kind)
    message.time = time
    return message


def _read_fix(data: bytes, pos: int, ctx: DecodeContext, kind: MessageType) -> Message:
    info, lat_raw, lon_raw, speed, flags = _GPS_NO_TIME.unpack_from(data, pos)
    valid = bool(flags & COURSE_VALID)
    attrs: dict[str, Any] = {}
    if flags & COURSE_HAS_ACC:
        attrs[Attr.IGNITION] = bool(flags & COURSE_ACC)
    if not valid and not lat_raw and not lon_raw:
        lat = lon = None
    else:
        lat = lat_raw / 1_800_000
        lon = lon_raw / 1_800_000
        if not flags & COURSE_NORTH:
            lat = -lat
        if flags & COURSE_WEST:
            lon = -lon
    return Message(
        kind if lat is not None or kind is not MessageType.POSITION else MessageType.STATUS,
        _terminal_id(ctx),
        None,
        valid,
        lat,
        lon,
        float(speed),
        float(flags & 0x03FF),
        None,
        info & 0x0F,
        None,
        [],
        attrs,
    )


def read_cell(
    data: bytes, pos: int, cid_size: int = 3, lac_size: int = 2, mnc_size: int = 1
) -> tuple[dict[str, int], int]:
    """MCC, MNC (2 bytes when the MCC's top bit is set), LAC and cell id; and the end."""
    if cid_size == 3 and lac_size == 2 and mnc_size == 1 and len(data) >= pos + 8:
        mcc, mnc, lac, cid_high, cid_low = _CELL.unpack_from(data, pos)
        if not mcc & 0x8000:  # the common GT06 cell, in one unpack
            return {"mcc": mcc, "mnc": mnc, "lac": lac, "cid": cid_high << 16 | cid_low}, pos + 8
    mcc = _U16.unpack_from(data, pos)[0]
    pos += 2
    if mcc & 0x8000 or mnc_size == 2:
        mnc = _U16.unpack_from(data, pos)[0]
        pos += 2
    else:
        mnc = data[pos]
        pos += 1
    lac = int.from_bytes(data[pos : pos + lac_size], "big")
    pos += lac_size
    cid = int.from_bytes(data[pos : pos + cid_size], "big")
    pos += cid_size
    if pos > len(data):
        raise MalformedFrame("cell block truncated")
    return {"mcc": mcc & 0x7FFF, "mnc": mnc, "lac": lac, "cid": cid}, pos


def read_status(data: bytes, pos: int, message: Message) -> None:
    """Terminal information, voltage level, GSM signal and the alarm byte."""
    if len(data) < pos + 3:
        raise MalformedFrame("status block truncated")
    info, voltage, gsm = data[pos], data[pos + 1], data[pos + 2]
    attrs = message.attributes
    attrs[Attr.ARMED] = bool(info & 0x01)
    attrs[Attr.IGNITION] = bool(info & 0x02)
    attrs[Attr.CHARGING] = bool(info & 0x04)
    attrs[Attr.BLOCKED] = bool(info & 0x80)
    attrs["gt06.gps_tracking"] = bool(info & 0x40)
    alarms = message.alarms
    info_alarm = INFO_ALARMS.get((info >> 3) & 0x07)
    if info_alarm:
        alarms.append(info_alarm)
    if voltage <= 6:
        attrs[Attr.BATTERY_LEVEL] = round(voltage * 100 / 6)
    elif voltage <= 100:
        attrs[Attr.BATTERY_LEVEL] = voltage
    attrs[Attr.GSM_SIGNAL_RAW] = gsm
    if gsm <= 4:
        attrs[Attr.GSM_SIGNAL] = gsm * 25
    if len(data) > pos + 3:
        code = data[pos + 3]
        if code:
            attrs[Attr.EVENT_CODE] = code
            alarm = ALARM_CODES.get(code)
            if alarm and alarm not in alarms:
                alarms.append(alarm)


# --------------------------------------------------------------------------- handlers


def _login(packet: Packet, ctx: DecodeContext) -> list[Message]:
    content = packet.content
    if len(content) < 8:
        raise MalformedFrame("login without an IMEI")
    imei = content[:8].hex()
    if imei[0] == "0":
        imei = imei[1:]
    if not imei.isdigit():
        raise MalformedFrame(f"IMEI {imei!r} is not BCD")
    attrs: dict[str, Any] = {}
    if len(content) >= 10:
        attrs["gt06.type_id"] = _U16.unpack_from(content, 8)[0]
    extension = _U16.unpack_from(content, 10)[0] if len(content) >= 12 else 0
    if extension:
        hhmm = extension >> 4
        hours, minutes = divmod(hhmm, 100)
        if hours <= 14 and minutes < 60:
            sign = "-" if extension & 0x08 else "+"
            zone = f"{sign}{hours:02d}:{minutes:02d}"
            attrs[Attr.TIME_ZONE] = zone
            ctx.state["gt06.tz"] = parse_tz(zone)
    ctx.state["gt06.imei"] = imei
    return [Message(MessageType.LOGIN, imei, attributes=attrs)]


def _gps_lbs(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """GPS block, then (for most types) the serving cell and type-specific fields."""
    content = packet.content
    message = read_gps(content, 0, ctx)
    protocol = packet.protocol
    attrs = message.attributes
    rest = len(content) - 18
    if protocol in (GPS, GPS_PHONE) or rest < 8:
        return [message]
    if protocol == GPS_4G:
        cell, pos = read_cell(content, 18, cid_size=8, lac_size=4)
    elif protocol == GPS_LBS_6:
        cell, pos = read_cell(content, 18, cid_size=4, mnc_size=2)
    else:
        cell, pos = read_cell(content, 18)
    attrs[Attr.CELL] = cell
    extra = len(content) - pos
    if extra in (3, 7) or (protocol in (GPS_LBS_2, GPS_4G) and extra >= 3):
        # ACC, data upload mode, real-time/re-upload flag [, mileage]
        attrs[Attr.IGNITION] = content[pos] == 1
        attrs["gt06.upload_mode"] = content[pos + 1]
        if content[pos + 2] == 1:
            attrs[Attr.ARCHIVED] = True
        if extra >= 7:
            attrs[Attr.ODOMETER_M] = int.from_bytes(content[pos + 3 : pos + 7], "big")
    elif extra >= 5 and protocol == GPS_LBS and Attr.IGNITION not in attrs:
        # variants append a status block; only its terminal information byte is certain
        info = content[pos]
        attrs[Attr.IGNITION] = bool(info & 0x02)
        attrs[Attr.CHARGING] = bool(info & 0x04)
    return [message]


def _gps_only(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """A GPS block followed by fields that are not a cell (0x2A: the phone asking)."""
    return [read_gps(packet.content, 0, ctx)]


def _x1_gps(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x34: a 4-byte prefix, then the GPS block."""
    return [read_gps(packet.content, 4, ctx)]


def _alarm(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """GPS block, length-prefixed cell, then terminal information and the alarm code."""
    content = packet.content
    message = read_gps(content, 0, ctx, MessageType.ALARM)
    message.type = MessageType.ALARM
    if len(content) < 19:
        return [message]
    lbs_size = content[18]
    pos = 18 + max(lbs_size, 1)
    if lbs_size >= 9:
        message.attributes[Attr.CELL] = read_cell(content, 19, cid_size=4 if lbs_size >= 10 else 3)[0]
    if len(content) >= pos + 4:
        read_status(content, pos, message)
    return [message]


def _status(packet: Packet, ctx: DecodeContext) -> list[Message]:
    content = packet.content
    message = Message(MessageType.STATUS, _terminal_id(ctx))
    if len(content) == 16:  # extended layout
        attrs = message.attributes
        info = content[0]
        attrs[Attr.IGNITION] = bool(info & 0x02)
        attrs[Attr.CHARGING] = bool(info & 0x04)
        attrs[Attr.BATTERY_LEVEL] = content[5]
        attrs["gt06.working_mode"] = content[6]
        attrs[Attr.BATTERY_V] = _U16.unpack_from(content, 7)[0] / 100
        if content[3]:
            attrs[Attr.EVENT_CODE] = content[3]
            alarm = ALARM_CODES.get(content[3])
            if alarm:
                message.alarms.append(alarm)
        return [message]
    read_status(content, 0, message)
    if message.alarms:
        message.type = MessageType.ALARM
    return [message]


def _heartbeat(packet: Packet, ctx: DecodeContext) -> list[Message]:
    content = packet.content
    message = Message(MessageType.HEARTBEAT, _terminal_id(ctx))
    if content:
        status = content[0]
        attrs = message.attributes
        attrs[Attr.ARMED] = bool(status & 0x01)
        attrs[Attr.IGNITION] = bool(status & 0x02)
        attrs[Attr.CHARGING] = bool(status & 0x04)
        if len(content) >= 3:
            attrs[Attr.BATTERY_V] = _U16.unpack_from(content, 1)[0] / 100
        if len(content) >= 4:
            attrs[Attr.GSM_SIGNAL_RAW] = content[3]
            if content[3] <= 4:
                attrs[Attr.GSM_SIGNAL] = content[3] * 25
    return [message]


def _lbs_status(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x19 (and 0xA5 with the 4G cell): the serving cell, then the status block."""
    content = packet.content
    message = Message(MessageType.STATUS, _terminal_id(ctx))
    if packet.protocol == LBS_ALARM_4G:
        cell, pos = read_cell(content, 0, cid_size=8, lac_size=4)
    else:
        cell, pos = read_cell(content, 0)
    message.attributes[Attr.CELL] = cell
    if len(content) >= pos + 4:
        read_status(content, pos, message)
    if message.alarms:
        message.type = MessageType.ALARM
    return [message]


def _text_result(text: str, ctx: DecodeContext) -> list[Message]:
    attrs: dict[str, Any] = {Attr.RESULT: text}
    upper = text.upper()
    if "ICCID" in upper:
        digits = "".join(ch for ch in upper.split("ICCID", 1)[1] if ch.isdigit() or ch == "F")
        if len(digits) >= 18:
            attrs[Attr.ICCID] = digits[:20].rstrip("F")
    return [Message(MessageType.COMMAND_RESULT, _terminal_id(ctx), attributes=attrs)]


def _string(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x15 / 0x81: command length, 4-byte server flag, ASCII text, language."""
    content = packet.content
    if not content:
        raise MalformedFrame("empty string packet")
    size = content[0]
    text = content[5 : 1 + size].decode("ascii", "replace")
    return _text_result(text.strip("\x00").strip(), ctx)


def _string_info(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x21: 4-byte server flag, encoding (1 ASCII, 2 UTF-16BE), text."""
    content = packet.content
    if len(content) < 5:
        raise MalformedFrame("string info truncated")
    raw = content[5:]
    text = raw.decode("utf-16-be", "replace") if content[4] == 2 else raw.decode("ascii", "replace")
    return _text_result(text.strip("\x00").strip(), ctx)


def _iccid(data: bytes) -> str:
    digits = data.hex()
    if digits.startswith("98"):  # nibble-swapped, as on the SIM card
        digits = bytes.fromhex(digits)[::-1].hex()[::-1]
    return digits.rstrip("f").upper()


def _info(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x94 information transfer: sub-type, then its data."""
    content = packet.content
    if not content:
        raise MalformedFrame("empty information packet")
    subtype = content[0]
    data = content[1:]
    message = Message(MessageType.INFO, _terminal_id(ctx))
    attrs = message.attributes
    if subtype == 0x00 and len(data) >= 2:
        attrs[Attr.POWER_V] = _U16.unpack_from(data)[0] / 100
    elif subtype == 0x0A and len(data) >= 26:
        attrs["gt06.imei"] = digits_of(data[:8]).lstrip("0") or "0"
        attrs[Attr.IMSI] = digits_of(data[8:16]).lstrip("0")
        attrs[Attr.ICCID] = _iccid(data[16:26])
    elif subtype == 0x04:
        text = data.decode("ascii", "replace")
        attrs["gt06.status_text"] = text
    elif subtype == 0x05 and data:
        attrs["gt06.door"] = bool(data[0] & 0x01)
    else:
        attrs[f"gt06.info{subtype:02x}"] = data.hex()
    return [message]


def _time_request(packet: Packet, ctx: DecodeContext) -> list[Message]:
    return [Message(MessageType.TIME_REQUEST, _terminal_id(ctx))]


def _jc100_alarm(packet: Packet, ctx: DecodeContext) -> list[Message]:
    content = packet.content
    if len(content) < 7:
        raise MalformedFrame("JC100 alarm truncated")
    message = Message(MessageType.ALARM, _terminal_id(ctx), _gps_time(content, 0, _session_tz(ctx)))
    code = content[6]
    message.attributes[Attr.EVENT_CODE] = code
    message.alarms.append(JC100_ALARMS.get(code, Alarm.GENERAL))
    return [message]


def _az735(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x32/0x33: time, length-prefixed GPS (no time), length-prefixed cell, more."""
    content = packet.content
    if len(content) < 7:
        raise MalformedFrame("packet truncated")
    kind = MessageType.ALARM if packet.protocol == ALARM_4 else MessageType.POSITION
    time = _gps_time(content, 0, _session_tz(ctx))
    gps_size = content[6]
    if gps_size >= 12 and len(content) >= 7 + 12:
        message = _read_fix(content, 7, ctx, kind)
    else:
        message = Message(MessageType.STATUS if kind is MessageType.POSITION else kind, _terminal_id(ctx))
    message.time = time
    pos = 7 + gps_size
    if len(content) > pos and content[pos] >= 8 and len(content) >= pos + 1 + content[pos]:
        message.attributes[Attr.CELL] = read_cell(content, pos + 1)[0]
    return [message]


def _wifi(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x17 / 0x69: BCD time and access points; no fix."""
    content = packet.content
    message = Message(MessageType.STATUS, _terminal_id(ctx))
    if len(content) >= 6:
        try:
            message.time = device_time(
                2000 + BCD[content[0]],
                BCD[content[1]],
                BCD[content[2]],
                BCD[content[3]],
                BCD[content[4]],
                BCD[content[5]],
                _session_tz(ctx),
            )
        except MalformedFrame:
            message.time = None
    message.attributes["gt06.wifi"] = content[6:].hex()
    return [message]


_MODULE = struct.Struct(">HH")
_MODULAR_GPS = struct.Struct(">IBhIIBH")  # unix time, satellites, altitude, lat, lon, speed, flags


def _modular(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x70: a list of modules ``type(2) length(2) value``."""
    content = packet.content
    message = Message(MessageType.STATUS, _terminal_id(ctx))
    attrs = message.attributes
    pos = 0
    while pos + 4 <= len(content):
        module, length = _MODULE.unpack_from(content, pos)
        value = content[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if len(value) < length:
            raise MalformedFrame(f"module 0x{module:04x} runs past the packet")
        if module == 0x0033 and length >= 18:
            stamp, satellites, altitude, lat_raw, lon_raw, speed, flags = _MODULAR_GPS.unpack_from(value)
            message.time = datetime.fromtimestamp(stamp, UTC)
            message.satellites = satellites
            message.altitude_m = float(altitude)
            message.valid = bool(flags & COURSE_VALID)
            if message.valid or lat_raw or lon_raw:
                lat = lat_raw / 1_800_000
                lon = lon_raw / 1_800_000
                message.lat = lat if flags & COURSE_NORTH else -lat
                message.lon = -lon if flags & COURSE_WEST else lon
                message.type = MessageType.POSITION
            message.speed_kmh = float(speed)
            message.course = float(flags & 0x03FF)
        elif module == 0x0001 and length == 8:
            attrs["gt06.imei"] = digits_of(value).lstrip("0")
        elif module == 0x0002 and length == 8:
            attrs[Attr.IMSI] = digits_of(value).lstrip("0")
        elif module == 0x0003 and length == 10:
            attrs[Attr.ICCID] = _iccid(value)
        elif module == 0x0011 and length >= 9:
            attrs[Attr.CELL] = read_cell(value, 0, cid_size=length - 6, mnc_size=2)[0]
        elif module == 0x0018 and length == 2:
            attrs[Attr.BATTERY_V] = _U16.unpack(value)[0] / 100
        elif module == 0x002E and length == 4:
            attrs[Attr.ODOMETER_M] = int.from_bytes(value, "big")
        elif module == 0x0034 and length >= 1:
            attrs[Attr.EVENT_CODE] = value[0]
        else:
            attrs[f"gt06.m{module:04x}"] = value.hex()
    return [message]


def _peripheral(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x9B: data passed through from a serial peripheral: an RFID reader's
    ``STX id(10) check(2) ETX`` or a thermometer's ASCII reading."""
    content = packet.content
    message = Message(MessageType.INFO, _terminal_id(ctx))
    attrs = message.attributes
    data = content[1:]
    if data[:1] == b"\x02" and b"\x03" in data:
        card = data[1 : data.index(b"\x03")].decode("ascii", "replace")
        if len(card) == 12 and card.isalnum():
            attrs[Attr.DRIVER_ID] = card[:10]
    else:
        reading = bytearray()
        for byte in data:
            if not (0x30 <= byte <= 0x39 or byte in (0x2D, 0x2E)):
                break
            reading.append(byte)
        try:
            attrs[Attr.TEMPERATURE_C] = float(reading)
        except ValueError:
            pass
    if not attrs:
        attrs["gt06.x9b"] = content.hex()
    return [message]


def _opaque(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """Packets gpsfleet records but does not interpret (OBD, Wi-Fi lists, photos, ...)."""
    message = Message(MessageType.INFO, _terminal_id(ctx))
    message.attributes[f"gt06.x{packet.protocol:02x}"] = packet.content.hex()
    return [message]


Handler = Callable[[Packet, DecodeContext], list[Message]]
HANDLERS: dict[int, Handler] = {
    LOGIN: _login,
    GPS: _gps_lbs,
    GPS_LBS_6: _gps_lbs,
    GPS_LBS: _gps_lbs,
    GPS_PHONE: _gps_lbs,
    GPS_LBS_EXTEND: _gps_lbs,
    GPS_LBS_2: _gps_lbs,
    GPS_LBS_3: _gps_lbs,
    GPS_LBS_4: _gps_lbs,
    GPS_LBS_5: _gps_lbs,
    GPS_4G: _gps_lbs,
    STATUS: _status,
    STRING: _string,
    COMMAND_REPLY: _string,
    STRING_INFO: _string_info,
    ALARM: _alarm,
    ALARM_2: _alarm,
    ALARM_3: _alarm,
    FENCE_SINGLE: _alarm,
    FENCE_MULTI: _alarm,
    LBS_STATUS: _lbs_status,
    LBS_ALARM_4G: _lbs_status,
    HEARTBEAT: _heartbeat,
    X1_GPS: _x1_gps,
    GPS_LBS_STATUS_4: _az735,
    ALARM_4: _az735,
    TIME_REQUEST: _time_request,
    INFO: _info,
    ADDRESS_REQUEST: _gps_only,
    ALARM_JC100: _jc100_alarm,
    WIFI: _wifi,
    WIFI_2: _wifi,
}
HANDLERS[0x70] = _modular
HANDLERS[0x9B] = _peripheral
for _opaque_type in (0x14, 0x18, 0x24, 0x28, 0x2C, 0x2E, 0x35, 0x36, 0x40, 0x41, 0x65, 0x66, 0x8C):
    HANDLERS[_opaque_type] = _opaque
for _opaque_type in (0xA1, 0xA2, 0xA7, 0xF3):
    HANDLERS[_opaque_type] = _opaque

# Packets the terminal waits for an echo of (it resends them otherwise).
ECHOED = frozenset(
    {
        LOGIN,
        STATUS,
        HEARTBEAT,
        ALARM,
        ALARM_2,
        ALARM_3,
        ALARM_4,
        LBS_STATUS,
        ALARM_JC100,
        FENCE_SINGLE,
        FENCE_MULTI,
        LBS_ALARM_4G,
    }
)


def time_reply(serial: int | None, now: datetime) -> bytes:
    now = now.astimezone(UTC)
    content = bytes((now.year - 2000, now.month, now.day, now.hour, now.minute, now.second))
    return reply(TIME_REQUEST, serial, content)


def decode(frame: bytes, ctx: DecodeContext) -> Decoded:
    packet = open_packet(frame, ctx.lenient)
    handler = HANDLERS.get(packet.protocol)
    if handler is None:
        raise UnsupportedMessage(f"protocol 0x{packet.protocol:02x}")
    try:
        messages = handler(packet, ctx)
    except (IndexError, struct.error) as exc:
        raise MalformedFrame(f"protocol 0x{packet.protocol:02x}: {exc}") from exc
    serial = packet.serial
    if serial is not None:
        for message in messages:
            message.attributes[Attr.SERIAL] = serial
    if not packet.checksum_ok:
        for message in messages:
            message.attributes[Attr.CHECKSUM_OK] = False
    answer: bytes | None = None
    if packet.protocol in ECHOED:
        answer = reply(packet.protocol, serial)
    elif packet.protocol == TIME_REQUEST:
        answer = time_reply(serial, ctx.now())
    elif packet.protocol in (WIFI, WIFI_2) and len(packet.content) >= 6:
        # the Wi-Fi packet's own BCD time echoed, without length, serial or CRC
        answer = b"\x78\x78\x00" + bytes((packet.protocol,)) + packet.content[:6] + END
    terminal_id = messages[0].terminal_id if packet.protocol == LOGIN else None
    return Decoded(messages, answer, terminal_id)


# --------------------------------------------------------------------------- terminal side


def _tz_extension(tz: tzinfo) -> int:
    """Login extension bits: zone as hhmm << 4, bit 3 for west, low bits: language (English)."""
    offset = tz.utcoffset(None)
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    west = minutes < 0
    hours, rest = divmod(abs(minutes), 60)
    return ((hours * 100 + rest) << 4) | (0x08 if west else 0) | 0x02


class Gt06Device(DeviceCodec):
    """A GT06N-style tracker: login, 0x22 positions, 0x16 alarms, 0x13 heartbeats and
    0x94 information (external power, ICCID)."""

    protocol = "gt06"
    type_id = 0x2201

    def __init__(self, terminal_id: str, *, tz: Any = UTC, transport: str = "tcp") -> None:
        super().__init__(terminal_id, tz=tz, transport=transport)
        self.imei_bcd = bcd_encode(terminal_id, 8)
        self._buffer = b""
        self._iccid_sent: str | None = None

    def packet(self, protocol: int, content: bytes, *, long: bool = False) -> tuple[bytes, int]:
        serial = self.next_seq()
        return encode_packet(protocol, content, serial, long=long), serial

    def handshake(self) -> Outgoing:
        content = self.imei_bcd + _U16.pack(self.type_id) + _U16.pack(_tz_extension(self.tz))
        data, serial = self.packet(LOGIN, content)
        return Outgoing(data, serial)

    def _gps_block(self, message: Message) -> bytes:
        clock = to_device_clock(message.time or datetime.now(UTC), self.tz)
        lat = message.lat or 0.0
        lon = message.lon or 0.0
        flags = round(message.course or 0) % 360
        if lat >= 0:
            flags |= COURSE_NORTH
        if lon < 0:
            flags |= COURSE_WEST
        if message.valid:
            flags |= COURSE_VALID
        ignition = message.attributes.get(Attr.IGNITION)
        if ignition is not None:
            flags |= COURSE_HAS_ACC | (COURSE_ACC if ignition else 0)
        satellites = min(message.satellites or 0, 15)
        return _GPS.pack(
            clock.year - 2000,
            clock.month,
            clock.day,
            clock.hour,
            clock.minute,
            clock.second,
            0xC0 | satellites,
            round(abs(lat) * 1_800_000),
            round(abs(lon) * 1_800_000),
            min(round(message.speed_kmh or 0), 255),
            flags,
        )

    @staticmethod
    def _cell(attributes: Mapping[str, Any]) -> bytes:
        cell = attributes.get(Attr.CELL) or {}
        return struct.pack(
            ">HBH", int(cell.get("mcc", 0)), int(cell.get("mnc", 0)), int(cell.get("lac", 0))
        ) + int(cell.get("cid", 0)).to_bytes(3, "big")

    @staticmethod
    def _terminal_info(attributes: Mapping[str, Any], alarms: list[str]) -> bytes:
        info = 0x40  # GPS tracking on
        if attributes.get(Attr.ARMED):
            info |= 0x01
        if attributes.get(Attr.IGNITION):
            info |= 0x02
        if attributes.get(Attr.CHARGING):
            info |= 0x04
        if attributes.get(Attr.BLOCKED):
            info |= 0x80
        for code, name in INFO_ALARMS.items():
            if name in alarms:
                info |= code << 3
                break
        level = attributes.get(Attr.BATTERY_LEVEL)
        voltage = 6 if level is None else max(0, min(6, round(level * 6 / 100)))
        signal = attributes.get(Attr.GSM_SIGNAL)
        gsm = 4 if signal is None else max(0, min(4, round(signal / 25)))
        code = next((ALARM_TO_CODE[name] for name in alarms if name in ALARM_TO_CODE), 0)
        return bytes((info, voltage, gsm, code, 0x02))

    def _extras(self, attributes: Mapping[str, Any], *, iccid: bool) -> bytes:
        """0x94 frames a real device sends besides its reports: external power, and its
        ICCID (with status, and once a session or when the SIM changed with positions)."""
        data = b""
        power = attributes.get(Attr.POWER_V)
        if power is not None:
            data += self.packet(INFO, b"\x00" + _U16.pack(round(power * 100)), long=True)[0]
        card = attributes.get(Attr.ICCID)
        if card and (iccid or card != self._iccid_sent):
            self._iccid_sent = card
            imsi = str(attributes.get(Attr.IMSI) or "0")
            content = (
                b"\x0a"
                + self.imei_bcd
                + bcd_encode(imsi, 8)
                + bytes.fromhex(str(attributes[Attr.ICCID]).ljust(20, "f"))
            )
            data += self.packet(INFO, content, long=True)[0]
        return data

    def position(self, message: Message) -> Outgoing:
        attrs = message.attributes
        alarm_codes = [
            name for name in message.alarms if name in ALARM_TO_CODE or name in INFO_ALARMS.values()
        ]
        if alarm_codes:
            content = self._gps_block(message) + b"\x09" + self._cell(attrs)
            content += self._terminal_info(attrs, message.alarms)
            data, serial = self.packet(ALARM, content)
            needs_ack = True
        else:
            content = self._gps_block(message) + self._cell(attrs)
            ignition = attrs.get(Attr.IGNITION)
            content += bytes((1 if ignition else 0, 0x00, 1 if attrs.get(Attr.ARCHIVED) else 0))
            odometer = attrs.get(Attr.ODOMETER_M)
            if odometer is not None:
                content += int(odometer).to_bytes(4, "big")
            data, serial = self.packet(GPS_LBS_2, content)
            needs_ack = False
        return Outgoing(data + self._extras(attrs, iccid=False), serial, needs_ack)

    def heartbeat(self, attributes: Mapping[str, Any] | None = None) -> Outgoing:
        data, serial = self.packet(STATUS, self._terminal_info(attributes or {}, []))
        return Outgoing(data, serial)

    def status(self, attributes: Mapping[str, Any], alarms: list[str]) -> Outgoing:
        if alarms:
            data, serial = self.packet(
                LBS_STATUS, self._cell(attributes) + self._terminal_info(attributes, alarms)
            )
        else:
            data, serial = self.packet(STATUS, self._terminal_info(attributes, []))
        return Outgoing(data + self._extras(attributes, iccid=True), serial)

    def on_reply(self, data: bytes) -> ReplyEvent:
        event = ReplyEvent()
        buffered = self._buffer + data
        result = split(buffered)
        self._buffer = buffered[result.consumed :]
        for raw in result.frames:
            try:
                packet = open_packet(raw, lenient=False)
            except ValueError:
                continue
            if packet.serial is not None:
                event.acked.append(packet.serial)
            if packet.protocol == LOGIN:
                event.handshake_done = True
        return event

    def corrupt_checksum(self, frame: bytes) -> bytes:
        """The first frame of a write (the report; 0x94 extras may follow) with a bad CRC."""
        frames = split(frame).frames
        if not frames:
            return frame
        first = frames[0]
        bad = first[:-4] + bytes((first[-4] ^ 0xFF, first[-3] ^ 0xFF)) + first[-2:]
        return bad + frame[len(first) :]


SPEC = ProtocolSpec(
    name="gt06",
    split=split,
    decode=decode,
    default_port=5023,
    transports=frozenset({"tcp"}),
    default_tz="UTC",
    max_frame=MAX_FRAME,
    device=Gt06Device,
)
