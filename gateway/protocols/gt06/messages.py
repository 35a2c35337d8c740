"""GT06 decoding: one handler per protocol number, and the replies the terminal waits for."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.messages import Message, MessageType
from core.vocabulary import Alarm, Attr
from gateway.protocols.base import (
    DecodeContext,
    Decoded,
    MalformedFrame,
    UnsupportedMessage,
    parse_tz,
)
from gateway.protocols.binary import BCD, device_time, digits_of
from gateway.protocols.checksums import crc_itu
from gateway.protocols.gt06.fields import (
    ALARM_CODES,
    COURSE_NORTH,
    COURSE_VALID,
    COURSE_WEST,
    GPS_AND_CELL,
    fix_message,
    gps_time,
    iccid_digits,
    read_cell,
    read_fix,
    read_gps,
    read_status,
    session_terminal_id,
    session_tz,
)
from gateway.protocols.gt06.frames import (
    ADDRESS_REQUEST,
    ALARM,
    ALARM_2,
    ALARM_3,
    ALARM_4,
    ALARM_JC100,
    COMMAND_REPLY,
    END,
    FENCE_MULTI,
    FENCE_SINGLE,
    GPS,
    GPS_4G,
    GPS_LBS,
    GPS_LBS_2,
    GPS_LBS_3,
    GPS_LBS_4,
    GPS_LBS_5,
    GPS_LBS_6,
    GPS_LBS_EXTEND,
    GPS_LBS_STATUS_4,
    GPS_PHONE,
    HEARTBEAT,
    INFO,
    LBS_ALARM_4G,
    LBS_STATUS,
    LOGIN,
    SERIAL_CRC,
    STATUS,
    STRING,
    STRING_INFO,
    TIME_REQUEST,
    WIFI,
    WIFI_2,
    X1_GPS,
    Packet,
    open_packet,
    reply,
)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_CELL_KEY = Attr.CELL
_POSITION = MessageType.POSITION
_INFO = MessageType.INFO

# JC100 dashcam alarm types (0x95).
JC100_ALARMS: dict[int, str] = {
    0x90: Alarm.HARSH_ACCELERATION,
    0x91: Alarm.HARSH_BRAKING,
    0x92: Alarm.HARSH_CORNERING,
    0x93: Alarm.ACCIDENT,
    0x10: Alarm.SOS,
}

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
    return [gps_lbs_message(packet.protocol, packet.content, ctx)]


def gps_lbs_message(protocol: int, content: bytes, ctx: DecodeContext) -> Message:
    """GPS block, then (for most types) the serving cell and type-specific fields."""
    if len(content) >= 26 and protocol in _USUAL_CELL_TYPES:  # GPS and cell, in one unpack
        hour_key, minute_second, info, lat_raw, lon_raw, speed, flags, mcc, mnc, lac, cid_high, cid_low = (
            GPS_AND_CELL.unpack_from(content)
        )
        message = fix_message(_POSITION, ctx, hour_key, minute_second, info, lat_raw, lon_raw, speed, flags)
        if mcc & 0x8000:  # a 2-byte MNC
            cell, pos = read_cell(content, 18)
        else:
            cell = {"mcc": mcc, "mnc": mnc, "lac": lac, "cid": cid_high << 16 | cid_low}
            pos = 26
    else:
        message = read_gps(content, 0, ctx)
        if protocol in (GPS, GPS_PHONE) or len(content) < 26:
            return message
        if protocol == GPS_4G:
            cell, pos = read_cell(content, 18, cid_size=8, lac_size=4)
        else:  # GPS_LBS_6
            cell, pos = read_cell(content, 18, cid_size=4, mnc_size=2)
    attrs = message.attributes
    attrs[_CELL_KEY] = cell
    extra = len(content) - pos
    if extra in (3, 7) or (protocol in (GPS_LBS_2, GPS_4G) and extra >= 3):
        # ACC, data upload mode, real-time/re-upload flag [, mileage]
        attrs[Attr.IGNITION] = content[pos] == 1
        attrs["gt06.upload_mode"] = content[pos + 1]
        if content[pos + 2] == 1:
            attrs[Attr.ARCHIVED] = True
        if extra >= 7:
            attrs[Attr.ODOMETER_M] = _U32.unpack_from(content, pos + 3)[0]
    elif extra >= 5 and protocol == GPS_LBS and Attr.IGNITION not in attrs:
        # variants append a status block; only its terminal information byte is certain
        info = content[pos]
        attrs[Attr.IGNITION] = bool(info & 0x02)
        attrs[Attr.CHARGING] = bool(info & 0x04)
    return message


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
    message = Message(MessageType.STATUS, session_terminal_id(ctx))
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
    message = Message(MessageType.HEARTBEAT, session_terminal_id(ctx))
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
    message = Message(MessageType.STATUS, session_terminal_id(ctx))
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
    return [Message(MessageType.COMMAND_RESULT, session_terminal_id(ctx), attributes=attrs)]


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


def _info(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x94 information transfer: sub-type, then its data."""
    content = packet.content
    if not content:
        raise MalformedFrame("empty information packet")
    subtype = content[0]
    message = Message(_INFO, ctx.terminal_id or ctx.state.get("gt06.imei"))
    attrs = message.attributes
    if subtype == 0x00 and len(content) >= 3:  # external voltage, as often as the fixes
        attrs[Attr.POWER_V] = _U16.unpack_from(content, 1)[0] / 100
        return [message]
    data = content[1:]
    if subtype == 0x0A and len(data) >= 26:
        attrs["gt06.imei"] = digits_of(data[:8]).lstrip("0") or "0"
        attrs[Attr.IMSI] = digits_of(data[8:16]).lstrip("0")
        attrs[Attr.ICCID] = iccid_digits(data[16:26])
    elif subtype == 0x04:
        text = data.decode("ascii", "replace")
        attrs["gt06.status_text"] = text
    elif subtype == 0x05 and data:
        attrs["gt06.door"] = bool(data[0] & 0x01)
    else:
        attrs[f"gt06.info{subtype:02x}"] = data.hex()
    return [message]


def _time_request(packet: Packet, ctx: DecodeContext) -> list[Message]:
    return [Message(MessageType.TIME_REQUEST, session_terminal_id(ctx))]


def _jc100_alarm(packet: Packet, ctx: DecodeContext) -> list[Message]:
    content = packet.content
    if len(content) < 7:
        raise MalformedFrame("JC100 alarm truncated")
    message = Message(MessageType.ALARM, session_terminal_id(ctx), gps_time(content, 0, session_tz(ctx)))
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
    time = gps_time(content, 0, session_tz(ctx))
    gps_size = content[6]
    if gps_size >= 12 and len(content) >= 7 + 12:
        message = read_fix(content, 7, ctx, kind)
    else:
        message = Message(
            MessageType.STATUS if kind is MessageType.POSITION else kind, session_terminal_id(ctx)
        )
    message.time = time
    pos = 7 + gps_size
    if len(content) > pos and content[pos] >= 8 and len(content) >= pos + 1 + content[pos]:
        message.attributes[Attr.CELL] = read_cell(content, pos + 1)[0]
    return [message]


def _wifi(packet: Packet, ctx: DecodeContext) -> list[Message]:
    """0x17 / 0x69: BCD time and access points; no fix."""
    content = packet.content
    message = Message(MessageType.STATUS, session_terminal_id(ctx))
    if len(content) >= 6:
        try:
            message.time = device_time(
                2000 + BCD[content[0]],
                BCD[content[1]],
                BCD[content[2]],
                BCD[content[3]],
                BCD[content[4]],
                BCD[content[5]],
                session_tz(ctx),
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
    message = Message(MessageType.STATUS, session_terminal_id(ctx))
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
            attrs[Attr.ICCID] = iccid_digits(value)
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
    message = Message(MessageType.INFO, session_terminal_id(ctx))
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
    message = Message(MessageType.INFO, session_terminal_id(ctx))
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


_SERIAL = Attr.SERIAL
_WIFI_TYPES = frozenset({WIFI, WIFI_2})


# GPS packets whose cell is the usual one (3-byte cell id), read with their GPS block
_USUAL_CELL_TYPES = frozenset(
    protocol
    for protocol, handler in HANDLERS.items()
    if handler is _gps_lbs and protocol not in (GPS, GPS_PHONE, GPS_4G, GPS_LBS_6)
)
# GPS packets read by ``gps_lbs_message`` that the terminal expects no answer to
_UNANSWERED_FIXES = frozenset(
    protocol
    for protocol, handler in HANDLERS.items()
    if handler is _gps_lbs and protocol not in ECHOED | _WIFI_TYPES | {LOGIN, TIME_REQUEST}
)


def decode(frame: bytes, ctx: DecodeContext) -> Decoded:
    size = len(frame)
    # The usual frame: short form, its length where the frame ends, its CRC right; opened
    # here without a call.  Anything else goes through ``open_packet``.
    if size >= 10 and frame[2] + 5 == size and frame[0] == 0x78 == frame[1] and frame[size - 2 :] == END:
        serial, expected = SERIAL_CRC.unpack_from(frame, size - 6)
        if crc_itu(frame[2 : size - 4]) == expected:
            protocol = frame[3]
            if protocol in _UNANSWERED_FIXES:  # most of the traffic, without a Packet
                try:
                    message = gps_lbs_message(protocol, frame[4 : size - 6], ctx)
                except (IndexError, struct.error) as exc:
                    raise MalformedFrame(f"protocol 0x{protocol:02x}: {exc}") from exc
                message.attributes[_SERIAL] = serial
                return Decoded([message], None, None)
            return decode_packet(Packet(protocol, frame[4 : size - 6], serial, True), ctx)
    return decode_packet(open_packet(frame, ctx.lenient), ctx)


def decode_packet(packet: Packet, ctx: DecodeContext) -> Decoded:
    """Decode a packet already opened (and its CRC checked): its messages and the reply."""
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
            message.attributes[_SERIAL] = serial
    if not packet.checksum_ok:
        for message in messages:
            message.attributes[Attr.CHECKSUM_OK] = False
    protocol = packet.protocol
    answer: bytes | None = None
    if protocol in ECHOED:
        answer = reply(protocol, serial)
    elif protocol == TIME_REQUEST:
        answer = time_reply(serial, ctx.now())
    elif protocol in _WIFI_TYPES and len(packet.content) >= 6:
        # the Wi-Fi packet's own BCD time echoed, without length, serial or CRC
        answer = b"\x78\x78\x00" + bytes((protocol,)) + packet.content[:6] + END
    terminal_id = messages[0].terminal_id if protocol == LOGIN else None
    return Decoded(messages, answer, terminal_id)
