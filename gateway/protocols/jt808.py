"""JT/T 808 (2011, 2013 and 2019 headers): framer, decoder, platform replies, terminal side.

Wire frame: ``7E | id(2) props(2) phone(6 BCD; 2019: version(1) + phone(10 BCD)) serial(2)
[packet total(2) index(2)] body | xor(1) | 7E`` with 0x7E/0x7D escaped as 7D 02 / 7D 01.
``split`` cuts raw frames between flags; ``decode`` unescapes, checks the XOR and reads the
body.  Times are the terminal's local clock (``ctx.tz``, +08:00 by default in settings).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
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
from gateway.protocols.binary import (
    BCD,
    ascii_text,
    bcd_encode,
    device_time,
    digits_of,
    report_without_fix,
    to_device_clock,
)
from gateway.protocols.checksums import xor8

FLAG = 0x7E
CHINA_TIME = parse_tz("+08:00")  # the clock JT/T 808 terminals keep unless configured
MAX_FRAME = 2048  # body length is 10 bits (1023) and escaping at most doubles it
MIN_INNER = 13  # id, props, 6-byte phone, serial, checksum

# Message ids
TERMINAL_RESPONSE = 0x0001
HEARTBEAT = 0x0002
LOGOUT = 0x0003
REGISTER = 0x0100
AUTHENTICATE = 0x0102
ATTRIBUTES = 0x0107
LOCATION = 0x0200
BATCH = 0x0704
LOCATION_ANSWER = 0x0201
CONTROL_ANSWER = 0x0500
TIME_QUERY = 0x0004  # 2019: query server time
TIME_SYNC = 0x0109  # vendor time synchronisation request
TRANSPARENT = 0x0900
MULTIMEDIA_EVENT = 0x0800
ACCELERATION = 0x2070  # vendor: acceleration samples
PHOTO = 0x8888  # vendor: photo data
LOCATION_2 = 0x5501  # vendor: JT600-style binary location
BLIND_LOCATION_2 = 0x5502  # vendor: the same, stored while offline
VENDOR_LOCATIONS = frozenset({LOCATION_2, BLIND_LOCATION_2})
PLATFORM_RESPONSE = 0x8001
REGISTER_RESPONSE = 0x8100

PROPS_LENGTH = 0x03FF
PROPS_SUBPACKAGE = 0x2000
PROPS_VERSION = 0x4000

# 0x8001 result codes
RESULT_OK = 0
RESULTS = {0: "ok", 1: "failed", 2: "bad_message", 3: "unsupported", 4: "alarm_confirmed"}

# Status dword bits
STATUS_ACC = 1 << 0
STATUS_VALID = 1 << 1
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3
STATUS_OIL_CUT = 1 << 10
STATUS_CIRCUIT_CUT = 1 << 11

# Alarm dword: bit -> shared alarm name (None: recorded only in the raw ``jt808.alarm``).
ALARM_BITS: tuple[str | None, ...] = (
    Alarm.SOS,  # 0 emergency
    Alarm.OVERSPEED,  # 1
    Alarm.FATIGUE,  # 2 fatigue driving
    Alarm.GENERAL,  # 3 danger warning
    Alarm.GNSS_FAULT,  # 4 GNSS module fault
    Alarm.GNSS_ANTENNA_CUT,  # 5
    Alarm.GNSS_ANTENNA_SHORT,  # 6
    Alarm.LOW_POWER,  # 7 main power under-voltage
    Alarm.POWER_CUT,  # 8 main power cut
    Alarm.DEVICE_FAULT,  # 9 LCD fault
    Alarm.DEVICE_FAULT,  # 10 TTS fault
    Alarm.DEVICE_FAULT,  # 11 camera fault
    Alarm.DEVICE_FAULT,  # 12 IC card module fault
    None,  # 13 overspeed pre-warning
    None,  # 14 fatigue pre-warning
    None,
    None,
    Alarm.TAMPER,  # 17 vendor use: tampering
    None,  # 18 driving time overrun for the day
    None,  # 19 parking overtime
    Alarm.GEOFENCE,  # 20 enter/exit area
    Alarm.GEOFENCE,  # 21 enter/exit route
    None,  # 22 route driving time
    None,  # 23 route deviation
    None,  # 24 VSS fault
    None,  # 25 abnormal fuel
    Alarm.GENERAL,  # 26 vehicle stolen
    Alarm.GENERAL,  # 27 illegal ignition
    Alarm.MOVEMENT,  # 28 illegal displacement
    Alarm.ACCIDENT,  # 29 collision warning
    Alarm.ACCIDENT,  # 30 rollover warning
    Alarm.DOOR,  # 31 illegal door open
)
# The bit a terminal sets for each shared alarm (the first bit with that meaning).
ALARM_TO_BIT: dict[str, int] = {}
for _bit, _name in enumerate(ALARM_BITS):
    if _name is not None:
        ALARM_TO_BIT.setdefault(_name, _bit)
ALARM_TO_BIT[Alarm.GEOFENCE_ENTER] = ALARM_TO_BIT[Alarm.GEOFENCE_EXIT] = 20

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HEAD = struct.Struct(">HH")
_LOCATION = struct.Struct(">IIIIhHH")  # alarm, status, lat, lon, altitude, speed, course
_RESPONSE = struct.Struct(">HHB")  # reply serial, reply id, result
_SUBPACKAGE = struct.Struct(">HH")

# --------------------------------------------------------------------------- framing


def split(buffer: bytes) -> Split:
    """Cut 7E-delimited frames (and the vendor text frames ``(...)`` sent on the same port);
    bytes before a flag are garbage, as are two flags too close to hold a frame (the first
    closed a frame whose start was lost)."""
    frames: list[bytes] = []
    garbage = 0
    pos = 0
    size = len(buffer)
    while pos < size:
        start = buffer.find(b"\x7e", pos)
        paren = buffer.find(b"(", pos, start if start >= 0 else size)
        if paren >= 0:
            garbage += paren - pos
            end = _text_frame_end(buffer, paren, start)
            if end == 0:
                pos = paren
                break
            if end < 0:
                garbage += 1
                pos = paren + 1
                continue
            frames.append(buffer[paren:end])
            pos = end
            continue
        if start < 0:
            garbage += size - pos
            pos = size
            break
        garbage += start - pos
        end = buffer.find(b"\x7e", start + 1)
        if end < 0:
            if size - start > MAX_FRAME:
                garbage += size - start
                pos = size
            else:
                pos = start
            break
        if end - start - 1 < MIN_INNER:
            garbage += end - start
            pos = end
            continue
        frames.append(buffer[start : end + 1])
        pos = end + 1
    return Split(pos, frames, garbage)


MAX_TEXT = 256


def _text_frame_end(buffer: bytes, start: int, next_flag: int) -> int:
    """End of a ``(...)`` text frame at ``start``; 0: need more; -1: not a text frame."""
    limit = next_flag if next_flag >= 0 else min(len(buffer), start + MAX_TEXT)
    close = buffer.find(b")", start, limit)
    if close < 0:
        return 0 if next_flag < 0 and len(buffer) - start < MAX_TEXT else -1
    text = buffer[start + 1 : close]
    return close + 1 if text.isascii() and text.decode("ascii").isprintable() else -1


# --------------------------------------------------------------------------- escaping and frames


def escape(inner: bytes) -> bytes:
    return inner.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(inner: bytes) -> bytes:
    return inner.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")


def encode_frame(
    msg_id: int,
    phone: bytes,
    serial: int,
    body: bytes,
    version: int | None = None,
    subpackage: tuple[int, int] | None = None,
) -> bytes:
    """One escaped wire frame.  ``phone`` is the BCD phone field as it goes on the wire
    (6 bytes, or 10 with a 2019 ``version``)."""
    if len(body) > PROPS_LENGTH:
        raise ValueError(f"JT/T 808 body of {len(body)} bytes needs sub-packages")
    props = len(body)
    head = b""
    if version is not None:
        props |= PROPS_VERSION
        head = bytes((version,))
    if subpackage is not None:
        props |= PROPS_SUBPACKAGE
    inner = _HEAD.pack(msg_id, props) + head + phone + _U16.pack(serial & 0xFFFF)
    if subpackage is not None:
        inner += _SUBPACKAGE.pack(*subpackage)
    inner += body
    return b"\x7e" + escape(inner + bytes((xor8(inner),))) + b"\x7e"


class Frame:
    """A JT/T 808 frame after unescaping and the checksum check."""

    __slots__ = (
        "msg_id",
        "props",
        "version",
        "phone_bcd",
        "terminal_id",
        "serial",
        "body",
        "packet",
        "checksum_ok",
    )

    def __init__(
        self,
        msg_id: int,
        props: int,
        version: int | None,
        phone_bcd: bytes,
        serial: int,
        body: bytes,
        packet: tuple[int, int] | None,
        checksum_ok: bool,
    ) -> None:
        self.msg_id = msg_id
        self.props = props
        self.version = version
        self.phone_bcd = phone_bcd
        self.terminal_id = phone_id(phone_bcd)
        self.serial = serial
        self.body = body
        self.packet = packet
        self.checksum_ok = checksum_ok


def phone_id(phone_bcd: bytes) -> str:
    """The terminal id: the phone digits; a 2019 20-digit phone that is a zero-padded
    12-digit one gives the 12 digits, so a terminal keeps its id across versions."""
    digits = phone_bcd.hex()
    if len(digits) == 12:
        return digits
    if len(digits) > 12 and not digits[:-12].strip("0"):
        return digits[-12:]
    return digits


def open_frame(frame: bytes, lenient: bool) -> Frame:
    """Unescape, check the XOR and read the header of one wire frame."""
    size = len(frame)
    if size < MIN_INNER + 2 or frame[0] != FLAG or frame[-1] != FLAG:
        raise FramingError("not a 7E-delimited JT/T 808 frame")
    inner = frame[1:-1]
    if 0x7D in inner:
        inner = unescape(inner)
        if len(inner) < MIN_INNER:
            raise MalformedFrame("frame too short after unescaping")
    checksum_ok = not xor8(inner)  # the XOR of data and check code is 0 when they agree
    if not checksum_ok and not lenient:
        raise ChecksumError(f"xor {xor8(inner[:-1]):02x} != {inner[-1]:02x}")
    msg_id, props = _HEAD.unpack_from(inner)
    if props & PROPS_VERSION:
        if len(inner) < 18:
            raise MalformedFrame("2019 header truncated")
        version: int | None = inner[4]
        phone = inner[5:15]
        pos = 15
    else:
        version = None
        phone = inner[4:10]
        pos = 10
    if msg_id in VENDOR_LOCATIONS:  # 1-byte serial; their declared length is unreliable
        if len(inner) < pos + 2:
            raise MalformedFrame("vendor header truncated")
        return Frame(msg_id, props, version, phone, inner[pos], inner[pos + 1 : -1], None, checksum_ok)
    (serial,) = _U16.unpack_from(inner, pos)
    pos += 2
    packet = None
    if props & PROPS_SUBPACKAGE:
        if len(inner) < pos + 5:
            raise MalformedFrame("sub-package header truncated")
        packet = _SUBPACKAGE.unpack_from(inner, pos)
        pos += 4
    body = inner[pos:-1]
    if len(body) != props & PROPS_LENGTH and not lenient:
        raise MalformedFrame(f"body is {len(body)} bytes, header says {props & PROPS_LENGTH}")
    return Frame(msg_id, props, version, phone, serial, body, packet, checksum_ok)


# --------------------------------------------------------------------------- location


def _item_fuel(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    if len(value) == 2:
        attrs[Attr.FUEL] = _U16.unpack(value)[0] / 10


def _item_tachograph_speed(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    if len(value) == 2:
        attrs["jt808.tachograph_speed_kmh"] = _U16.unpack(value)[0] / 10


def _item_uint(key: str) -> Callable[[bytes, dict[str, Any], list[str]], None]:
    def read(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
        attrs[key] = int.from_bytes(value, "big")

    return read


def _item_user_status(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    status = int.from_bytes(value, "big")
    attrs["jt808.user_status"] = status
    if status & 0x08:
        alarms.append(Alarm.VIBRATION)


def _item_power_decivolts(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    if len(value) == 2:
        attrs[Attr.POWER_V] = _U16.unpack(value)[0] / 10


def _item_battery_level(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    if len(value) == 1 and value[0] <= 100:
        attrs[Attr.BATTERY_LEVEL] = value[0]


def _item_iccid_text(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    text = ascii_text(value)
    if 18 <= len(text) <= 22 and text[:19].isdigit():
        attrs[Attr.ICCID] = text
    else:
        attrs["jt808.xd6"] = value.hex()


def _item_extensions(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    """0xEB: vendor sub-items ``len(2) id(2) value(len-2)`` (a leading word above 200 is an
    MCC: the cell-tower layout, kept raw)."""
    if len(value) < 4 or _U16.unpack_from(value)[0] > 200:
        attrs["jt808.xeb"] = value.hex()
        return
    pos = 0
    size = len(value)
    while pos + 4 <= size:
        length, sub_id = _SUBPACKAGE.unpack_from(value, pos)
        end = pos + 2 + length
        if length < 2 or end > size:
            break
        start = pos + 4
        pos = end
        if sub_id == 0x00B2 and length == 12:
            attrs[_ICCID] = value[start:end].hex().rstrip("f").upper()
        elif sub_id == 0x00CE and length == 4:
            attrs[_POWER_V] = _U16.unpack_from(value, start)[0] / 100
        elif sub_id == 0x0001 and length >= 4:  # fuel 1, 0.1 units (some send a 3rd byte)
            attrs[_FUEL] = _U16.unpack_from(value, start)[0] / 10
        elif sub_id == 0x0023:
            try:
                attrs["jt808.fuel2"] = float(ascii_text(value[start:end]))
            except ValueError:
                attrs["jt808.eb0023"] = value[start:end].hex()
        else:
            key = _EXTENSION_KEYS.get(sub_id)
            if key is None:
                key = f"jt808.eb{sub_id:04x}"
                if len(_EXTENSION_KEYS) < 1024:
                    _EXTENSION_KEYS[sub_id] = key
            attrs[key] = value[start:end].hex()


_EXTENSION_KEYS: dict[int, str] = {}
_ICCID = Attr.ICCID
_POWER_V = Attr.POWER_V
_FUEL = Attr.FUEL


ItemReader = Callable[[bytes, dict[str, Any], list[str]], None]
ITEMS: dict[int, ItemReader] = {
    0x02: _item_fuel,
    0x03: _item_tachograph_speed,
    0x04: _item_uint("jt808.alarm_event_id"),
    0x25: _item_uint("jt808.extended_status"),
    0x2A: _item_uint("jt808.io_status"),
    0x2B: _item_uint("jt808.analog"),
    0xD0: _item_user_status,
    0xD3: _item_power_decivolts,
    0xD4: _item_battery_level,
    0xD6: _item_iccid_text,
    0xEB: _item_extensions,
    0xFE: _item_battery_level,
}
_ODOMETER_M = Attr.ODOMETER_M
_GSM_SIGNAL = Attr.GSM_SIGNAL
_GSM_SIGNAL_RAW = Attr.GSM_SIGNAL_RAW
_STATUS = Attr.STATUS
_IGNITION = Attr.IGNITION
_BLOCKED = Attr.BLOCKED
_RAW_ITEM_KEYS = tuple(f"jt808.x{item:02x}" for item in range(256))


def decode_location(
    body: bytes, start: int, end: int, terminal_id: str | None, ctx: DecodeContext
) -> Message:
    """One 0x0200 body (also each item of a 0x0704 batch) between ``start`` and ``end``."""
    if end - start < 28:
        raise MalformedFrame("location body shorter than 28 bytes")
    alarm, status, lat_raw, lon_raw, altitude, speed, course = _LOCATION.unpack_from(body, start)
    bcd = BCD
    p = start + 22
    time = device_time(
        2000 + bcd[body[p]],
        bcd[body[p + 1]],
        bcd[body[p + 2]],
        bcd[body[p + 3]],
        bcd[body[p + 4]],
        bcd[body[p + 5]],
        ctx.tz,
    )
    attrs: dict[str, Any] = {
        _STATUS: status,
        _IGNITION: bool(status & STATUS_ACC),
        _BLOCKED: bool(status & (STATUS_OIL_CUT | STATUS_CIRCUIT_CUT)),
    }
    alarms: list[str] = []
    if alarm:
        attrs["jt808.alarm"] = alarm
        bits = alarm
        while bits:
            low = bits & -bits
            name = ALARM_BITS[low.bit_length() - 1]
            if name is not None and name not in alarms:
                alarms.append(name)
            bits ^= low
    pos = start + 28
    items = ITEMS
    satellites = None
    while pos + 2 <= end:
        item_id = body[pos]
        length = body[pos + 1]
        pos += 2 + length
        if pos > end:  # a vendor tail that is not TLV: keep it, keep the fix
            attrs["jt808.unparsed"] = body[pos - 2 - length : end].hex()
            break
        # the three items nearly every terminal sends, read inline for speed
        if item_id == 0x01 and length == 4:
            attrs[_ODOMETER_M] = _U32.unpack_from(body, pos - 4)[0] * 100
        elif item_id == 0x31 and length == 1:
            satellites = body[pos - 1]
        elif item_id == 0x30 and length == 1:
            raw = body[pos - 1]
            attrs[_GSM_SIGNAL_RAW] = raw
            if raw <= 31:  # CSQ scale 0-31
                attrs[_GSM_SIGNAL] = round(raw * 100 / 31)
        else:
            reader = items.get(item_id)
            if reader is not None:
                reader(body[pos - length : pos], attrs, alarms)
            elif length:
                attrs[_RAW_ITEM_KEYS[item_id]] = body[pos - length : pos].hex()
    valid = bool(status & STATUS_VALID)
    lat: float | None = lat_raw / 1e6
    lon: float | None = lon_raw / 1e6
    if not valid and not lat_raw and not lon_raw:
        lat = lon = None  # no fix was ever taken: no position at all
    else:
        if status & STATUS_SOUTH:
            lat = -lat  # type: ignore[operator]
        if status & STATUS_WEST:
            lon = -lon  # type: ignore[operator]
    return Message(
        MessageType.POSITION if lat is not None else MessageType.STATUS,
        terminal_id,
        time,
        valid,
        lat,
        lon,
        speed / 10,
        float(course % 360) if course <= 360 else None,
        float(altitude),
        satellites,
        None,
        alarms,
        attrs,
    )


def encode_location(message: Message, tz: Any) -> bytes:
    """A 0x0200 body from a Message: alarm and status bits, fix, and the health
    attributes as additional items."""
    alarm = 0
    for name in message.alarms:
        bit = ALARM_TO_BIT.get(name)
        if bit is not None:
            alarm |= 1 << bit
    attrs = message.attributes
    status = 0
    if attrs.get(Attr.IGNITION):
        status |= STATUS_ACC
    if message.valid:
        status |= STATUS_VALID
    lat = message.lat or 0.0
    lon = message.lon or 0.0
    if lat < 0:
        status |= STATUS_SOUTH
    if lon < 0:
        status |= STATUS_WEST
    if attrs.get(Attr.BLOCKED):
        status |= STATUS_OIL_CUT
    clock = to_device_clock(message.time or datetime.now(UTC), tz)
    body = _LOCATION.pack(
        alarm,
        status,
        round(abs(lat) * 1e6),
        round(abs(lon) * 1e6),
        round(message.altitude_m or 0),
        round((message.speed_kmh or 0) * 10),
        round(message.course or 0) % 360,
    ) + bytes.fromhex(clock.strftime("%y%m%d%H%M%S"))
    items = bytearray()
    if attrs.get(Attr.ODOMETER_M) is not None:
        items += b"\x01\x04" + _U32.pack(round(attrs[Attr.ODOMETER_M] / 100))
    if attrs.get(Attr.FUEL) is not None:
        items += b"\x02\x02" + _U16.pack(round(attrs[Attr.FUEL] * 10))
    signal = attrs.get(Attr.GSM_SIGNAL_RAW)
    if signal is None and attrs.get(Attr.GSM_SIGNAL) is not None:
        signal = round(attrs[Attr.GSM_SIGNAL] * 31 / 100)
    if signal is not None:
        items += b"\x30\x01" + bytes((min(int(signal), 255),))
    if message.satellites is not None:
        items += b"\x31\x01" + bytes((min(message.satellites, 255),))
    if attrs.get(Attr.BATTERY_LEVEL) is not None:
        items += b"\xd4\x01" + bytes((max(0, min(100, round(attrs[Attr.BATTERY_LEVEL]))),))
    extensions = bytearray()
    if attrs.get(Attr.ICCID):
        extensions += b"\x00\x0c\x00\xb2" + bytes.fromhex(str(attrs[Attr.ICCID]).ljust(20, "f"))
    if attrs.get(Attr.POWER_V) is not None:
        extensions += b"\x00\x04\x00\xce" + _U16.pack(round(attrs[Attr.POWER_V] * 100))
    if extensions:
        items += b"\xeb" + bytes((len(extensions),)) + extensions
    return body + bytes(items)


# --------------------------------------------------------------------------- other messages


def _register(frame: Frame, ctx: DecodeContext) -> list[Message]:
    body = frame.body
    if frame.version is not None:
        sizes = (11, 30, 30)  # 2019: manufacturer, model, terminal id
    elif len(body) >= 37:
        sizes = (5, 20, 7)  # 2013
    else:
        sizes = (5, 8, 7)  # 2011
    manufacturer_size, model_size, device_size = sizes
    fixed = 4 + manufacturer_size + model_size + device_size + 1
    if len(body) < fixed:
        raise MalformedFrame(f"registration body of {len(body)} bytes, needs {fixed}")
    province, city = struct.unpack_from(">HH", body)
    pos = 4
    manufacturer = ascii_text(body[pos : pos + manufacturer_size])
    pos += manufacturer_size
    model = ascii_text(body[pos : pos + model_size])
    pos += model_size
    device_id = ascii_text(body[pos : pos + device_size])
    pos += device_size
    attrs: dict[str, Any] = {
        Attr.MODEL: model,
        "jt808.manufacturer": manufacturer,
        "jt808.device_id": device_id,
        "jt808.province": province,
        "jt808.city": city,
        "jt808.plate_color": body[pos],
        "jt808.plate": body[pos + 1 :].decode("gbk", "replace").strip("\x00 "),
    }
    return [Message(MessageType.LOGIN, frame.terminal_id, attributes=attrs)]


def _authenticate(frame: Frame, ctx: DecodeContext) -> list[Message]:
    body = frame.body
    attrs: dict[str, Any] = {}
    if frame.version is not None and body:
        size = body[0]
        attrs["jt808.auth_code"] = body[1 : 1 + size].decode("latin-1")
        rest = body[1 + size :]
        if len(rest) >= 15:
            attrs["jt808.imei"] = ascii_text(rest[:15])
            attrs[Attr.FIRMWARE] = ascii_text(rest[15:35])
    else:
        attrs["jt808.auth_code"] = body.decode("latin-1")
    return [Message(MessageType.LOGIN, frame.terminal_id, attributes=attrs)]


def _heartbeat(frame: Frame, ctx: DecodeContext) -> list[Message]:
    return [Message(MessageType.HEARTBEAT, frame.terminal_id)]


def _location(frame: Frame, ctx: DecodeContext) -> list[Message]:
    return [decode_location(frame.body, 0, len(frame.body), frame.terminal_id, ctx)]


def _batch(frame: Frame, ctx: DecodeContext) -> list[Message]:
    body = frame.body
    if len(body) < 3:
        raise MalformedFrame("batch upload shorter than its header")
    count, kind = struct.unpack_from(">HB", body)
    messages: list[Message] = []
    pos = 3
    terminal_id = frame.terminal_id
    for _ in range(count):
        if pos + 2 > len(body):
            raise MalformedFrame(f"batch announces {count} items, holds {len(messages)}")
        (length,) = _U16.unpack_from(body, pos)
        pos += 2
        if pos + length > len(body):
            raise MalformedFrame("batch item runs past the body")
        message = decode_location(body, pos, pos + length, terminal_id, ctx)
        if kind:
            message.attributes[Attr.ARCHIVED] = True
        messages.append(message)
        pos += length
    return messages


def _attributes(frame: Frame, ctx: DecodeContext) -> list[Message]:
    body = frame.body
    model_size, device_size = (30, 30) if frame.version is not None else (20, 7)
    pos = 2 + 5 + model_size + device_size
    if len(body) < pos + 10 + 1:
        raise MalformedFrame("terminal attributes truncated")
    attrs: dict[str, Any] = {
        "jt808.terminal_type": _U16.unpack_from(body)[0],
        "jt808.manufacturer": ascii_text(body[2:7]),
        Attr.MODEL: ascii_text(body[7 : 7 + model_size]),
        "jt808.device_id": ascii_text(body[7 + model_size : pos]),
        Attr.ICCID: digits_of(body[pos : pos + 10]).upper(),
    }
    pos += 10
    size = body[pos]
    attrs["jt808.hardware"] = ascii_text(body[pos + 1 : pos + 1 + size])
    pos += 1 + size
    if pos < len(body):
        size = body[pos]
        attrs[Attr.FIRMWARE] = ascii_text(body[pos + 1 : pos + 1 + size])
        pos += 1 + size
    if pos + 2 <= len(body):
        attrs["jt808.gnss_module"] = body[pos]
        attrs["jt808.comm_module"] = body[pos + 1]
    return [Message(MessageType.INFO, frame.terminal_id, attributes=attrs)]


def _terminal_response(frame: Frame, ctx: DecodeContext) -> list[Message]:
    if len(frame.body) < 5:
        raise MalformedFrame("terminal general response shorter than 5 bytes")
    reply_serial, reply_id, result = _RESPONSE.unpack_from(frame.body)
    attrs = {
        Attr.RESULT: RESULTS.get(result, str(result)),
        "jt808.reply_serial": reply_serial,
        "jt808.reply_id": reply_id,
    }
    return [Message(MessageType.COMMAND_RESULT, frame.terminal_id, attributes=attrs)]


def _vendor_location(frame: Frame, ctx: DecodeContext) -> list[Message]:
    """0x5501/0x5502: a JT600 binary location (UTC), then signal, satellites, odometer,
    battery, cell and the product's status and alarm words."""
    body = frame.body
    if len(body) < 34:
        raise MalformedFrame("vendor location shorter than 34 bytes")
    bcd = BCD
    time = device_time(
        2000 + bcd[body[2]], bcd[body[1]], bcd[body[0]], bcd[body[3]], bcd[body[4]], bcd[body[5]], UTC
    )
    lat_digits = body[6:10].hex()  # DDMMmmmm
    lon_digits = body[10:15].hex()[:9]  # DDDMMmmmm, then a flag nibble
    if not (lat_digits.isdigit() and lon_digits.isdigit()):
        raise MalformedFrame("vendor location coordinates are not BCD")
    flags = body[14] & 0x0F
    lat = int(lat_digits[:2]) + int(lat_digits[2:]) / 600_000
    lon = int(lon_digits[:3]) + int(lon_digits[3:]) / 600_000
    if not flags & 0x02:
        lat = -lat
    if not flags & 0x04:
        lon = -lon
    rssi, satellites, odometer_km, battery, cid, lac, product, status, alarm = struct.unpack_from(
        ">BBIBIHBHH", body, 17
    )
    attrs: dict[str, Any] = {
        Attr.GSM_SIGNAL_RAW: rssi,
        Attr.ODOMETER_M: odometer_km * 1000,
        Attr.CELL: {"lac": lac, "cid": cid},
        "jt808.product": product,
        Attr.STATUS: status,
    }
    if battery == 0xAA:
        attrs[Attr.CHARGING] = True
    elif battery <= 100:
        attrs[Attr.BATTERY_LEVEL] = battery
    alarms: list[str] = []
    if product in (1, 2) and alarm & 0x01:
        alarms.append(Alarm.LOW_POWER)
    elif product == 3:
        attrs[Attr.BLOCKED] = bool(status & 0x20)
        for bit, name in ((0x02, Alarm.LOW_POWER), (0x04, Alarm.VIBRATION), (0x08, Alarm.LOW_BATTERY)):
            if alarm & bit:
                alarms.append(name)
    if frame.msg_id == BLIND_LOCATION_2:
        attrs[Attr.ARCHIVED] = True
    message = Message(
        MessageType.POSITION,
        frame.terminal_id,
        time,
        bool(flags & 0x01),
        round(lat, 6),
        round(lon, 6),
        float(body[15]),
        float(body[16] * 2 % 360),
        None,
        satellites,
        None,
        alarms,
        attrs,
    )
    return [message]


def _logout(frame: Frame, ctx: DecodeContext) -> list[Message]:
    return []


def _location_answer(frame: Frame, ctx: DecodeContext) -> list[Message]:
    """0x0201 location query / 0x0500 vehicle control answers: reply serial, 0x0200 body."""
    body = frame.body
    message = decode_location(body, 2, len(body), frame.terminal_id, ctx)
    message.attributes["jt808.reply_serial"] = _U16.unpack_from(body)[0]
    return [message]


def _time_request(frame: Frame, ctx: DecodeContext) -> list[Message]:
    return [Message(MessageType.TIME_REQUEST, frame.terminal_id)]


def _vendor_data(frame: Frame, ctx: DecodeContext) -> list[Message]:
    """Messages recorded but not interpreted (photos, acceleration samples, multimedia)."""
    attrs = {f"jt808.x{frame.msg_id:04x}": frame.body.hex()}
    return [Message(MessageType.INFO, frame.terminal_id, attributes=attrs)]


def _transparent(frame: Frame, ctx: DecodeContext) -> list[Message]:
    """0x0900 pass-through data: its type byte and the data, kept raw."""
    body = frame.body
    if not body:
        raise MalformedFrame("empty pass-through message")
    attrs = {"jt808.transparent_type": body[0], "jt808.transparent": body[1:].hex()}
    return [Message(MessageType.INFO, frame.terminal_id, attributes=attrs)]


Handler = Callable[[Frame, DecodeContext], list[Message]]
HANDLERS: dict[int, Handler] = {
    TERMINAL_RESPONSE: _terminal_response,
    HEARTBEAT: _heartbeat,
    LOGOUT: _logout,
    REGISTER: _register,
    AUTHENTICATE: _authenticate,
    ATTRIBUTES: _attributes,
    LOCATION: _location,
    BATCH: _batch,
    LOCATION_2: _vendor_location,
    BLIND_LOCATION_2: _vendor_location,
    LOCATION_ANSWER: _location_answer,
    CONTROL_ANSWER: _location_answer,
    TIME_QUERY: _time_request,
    TIME_SYNC: _time_request,
    TRANSPARENT: _transparent,
    MULTIMEDIA_EVENT: _vendor_data,
    ACCELERATION: _vendor_data,
    PHOTO: _vendor_data,
}
# Terminal messages the platform acknowledges with 0x8001 (a response is not answered).
ACKNOWLEDGED = frozenset({HEARTBEAT, LOGOUT, AUTHENTICATE, LOCATION, BATCH, MULTIMEDIA_EVENT, PHOTO})
# Time requests and the message id of their answer (UTC, BCD YYMMDDhhmmss).
TIME_ANSWERS = {TIME_QUERY: 0x8004, TIME_SYNC: 0x8109}

# --------------------------------------------------------------------------- replies


def _platform_serial(ctx: DecodeContext) -> int:
    serial = (ctx.state.get("jt808.serial", 0) + 1) & 0xFFFF
    ctx.state["jt808.serial"] = serial
    return serial


_GENERAL_RESPONSE_2013 = struct.Struct(">HH6sHHHB")


def general_response(frame: Frame, ctx: DecodeContext, result: int = RESULT_OK) -> bytes:
    if frame.version is None and len(frame.phone_bcd) == 6:  # the common case, in one pack
        inner = _GENERAL_RESPONSE_2013.pack(
            PLATFORM_RESPONSE, 5, frame.phone_bcd, _platform_serial(ctx), frame.serial, frame.msg_id, result
        )
        return b"\x7e" + escape(inner + bytes((xor8(inner),))) + b"\x7e"
    body = _RESPONSE.pack(frame.serial, frame.msg_id, result)
    return encode_frame(PLATFORM_RESPONSE, frame.phone_bcd, _platform_serial(ctx), body, frame.version)


def auth_code_for(frame: Frame) -> bytes:
    """The authentication code handed out on registration: the terminal's phone digits."""
    return frame.phone_bcd.hex().encode("ascii")


def register_response(frame: Frame, ctx: DecodeContext) -> bytes:
    body = _U16.pack(frame.serial) + bytes((RESULT_OK,)) + auth_code_for(frame)
    return encode_frame(REGISTER_RESPONSE, frame.phone_bcd, _platform_serial(ctx), body, frame.version)


# --------------------------------------------------------------------------- decoding

MAX_PACKETS = 256  # sub-packages of one message
MAX_PENDING = 4  # messages being reassembled per session


def _reassemble(frame: Frame, ctx: DecodeContext) -> bytes | None:
    """Keep a sub-package in the session; the whole body once the last one arrived."""
    total, index = frame.packet or (1, 1)
    if not 1 <= index <= total <= MAX_PACKETS:
        raise MalformedFrame(f"sub-package {index} of {total}")
    pending: dict[tuple[int, int], dict[int, bytes]] = ctx.state.setdefault("jt808.packets", {})
    key = (frame.msg_id, total)
    parts = pending.get(key)
    if parts is None:
        if len(pending) >= MAX_PENDING:
            pending.pop(next(iter(pending)))  # the oldest unfinished message is dropped
        parts = pending[key] = {}
    parts[index] = frame.body
    if len(parts) < total:
        return None
    del pending[key]
    return b"".join(parts[i] for i in range(1, total + 1))


def decode_text(frame: bytes, ctx: DecodeContext) -> Decoded:
    """``(id,1,001,BASE,2,TIME)`` asks for the time (answered with the sentence and the UTC
    time in place of TIME); any other text frame is a command result."""
    if not frame.endswith(b")") or not frame.isascii():
        raise FramingError("text frame is not (ASCII)")
    fields = frame[1:-1].decode("ascii").split(",")
    terminal_id = fields[0] if fields[0].isalnum() else None
    if terminal_id is None:
        raise MalformedFrame("text frame without a terminal id")
    if len(fields) >= 6 and fields[3] == "BASE" and fields[4] == "2":
        now = ctx.now().astimezone(UTC).strftime("%Y%m%d%H%M%S")
        reply = ("(" + ",".join([*fields[:5], now]) + ")").encode("ascii")
        return Decoded([Message(MessageType.TIME_REQUEST, terminal_id)], reply, terminal_id)
    result = Message(MessageType.COMMAND_RESULT, terminal_id, attributes={Attr.RESULT: ",".join(fields[1:])})
    return Decoded([result], None, terminal_id)


def decode(frame: bytes, ctx: DecodeContext) -> Decoded:
    if frame[:1] == b"(":
        return decode_text(frame, ctx)
    opened = open_frame(frame, ctx.lenient)
    handler = HANDLERS.get(opened.msg_id)
    if handler is None:
        raise UnsupportedMessage(f"message id 0x{opened.msg_id:04x}")
    if opened.packet is not None:
        whole = _reassemble(opened, ctx)
        if whole is None:
            return Decoded([], general_response(opened, ctx), opened.terminal_id)
        opened.body = whole
    messages = handler(opened, ctx)
    if not opened.checksum_ok:
        for message in messages:
            message.attributes[Attr.CHECKSUM_OK] = False
    if opened.msg_id == REGISTER:
        reply: bytes | None = register_response(opened, ctx)
    elif opened.msg_id in ACKNOWLEDGED:
        reply = general_response(opened, ctx)
    elif opened.msg_id in TIME_ANSWERS:
        now = bytes.fromhex(ctx.now().astimezone(UTC).strftime("%y%m%d%H%M%S"))
        answer = TIME_ANSWERS[opened.msg_id]
        reply = encode_frame(answer, opened.phone_bcd, _platform_serial(ctx), now, opened.version)
    else:
        reply = None
    return Decoded(messages, reply, opened.terminal_id)


# --------------------------------------------------------------------------- terminal side


class Jt808Device(DeviceCodec):
    """A JT/T 808-2013 terminal: registers, authenticates with the returned code, reports."""

    protocol = "jt808"
    version: int | None = None  # 2013 header; a 2019 terminal sets its protocol version
    province = 0
    city = 0
    manufacturer = b"GPSFL"
    model = b"SIM-JT808"

    def __init__(self, terminal_id: str, *, tz: Any = CHINA_TIME, transport: str = "tcp") -> None:
        super().__init__(terminal_id, tz=tz, transport=transport)
        self.phone_bcd = bcd_encode(terminal_id, 6 if self.version is None else 10)
        self._buffer = b""

    def frame(self, msg_id: int, body: bytes, *, needs_ack: bool = True) -> Outgoing:
        seq = self.next_seq()
        return Outgoing(encode_frame(msg_id, self.phone_bcd, seq, body, self.version), seq, needs_ack)

    def handshake(self) -> Outgoing:
        sizes = (5, 20, 7) if self.version is None else (11, 30, 30)
        body = (
            struct.pack(">HH", self.province, self.city)
            + self.manufacturer.ljust(sizes[0], b"\x00")
            + self.model.ljust(sizes[1], b"\x00")
            + self.terminal_id[-sizes[2] :].encode("ascii").ljust(sizes[2], b"\x00")
            + b"\x00"  # plate colour: not registered with a plate
        )
        return self.frame(REGISTER, body)

    def authenticate(self, code: bytes) -> Outgoing:
        if self.version is None:
            body = code
        else:
            body = bytes((len(code),)) + code + b"0" * 15 + b"gpsfleet-sim".ljust(20, b"\x00")
        return self.frame(AUTHENTICATE, body)

    def position(self, message: Message) -> Outgoing:
        return self.frame(LOCATION, encode_location(message, self.tz))

    def positions(self, messages: list[Message]) -> Outgoing:
        body = bytearray(struct.pack(">HB", len(messages), 1))  # 1: blind-area (stored) fixes
        for message in messages:
            location = encode_location(message, self.tz)
            body += _U16.pack(len(location)) + location
        return self.frame(BATCH, bytes(body))

    def heartbeat(self, attributes: Mapping[str, Any] | None = None) -> Outgoing:
        return self.frame(HEARTBEAT, b"")

    def status(self, attributes: Mapping[str, Any], alarms: list[str]) -> Outgoing:
        """A location report without a fix: what terminals send when GNSS is lost."""
        return self.position(report_without_fix(self.terminal_id, attributes, alarms))

    def on_reply(self, data: bytes) -> ReplyEvent:
        event = ReplyEvent()
        result = split(self._buffer + data)
        self._buffer = (self._buffer + data)[result.consumed :]
        for raw in result.frames:
            try:
                frame = open_frame(raw, lenient=False)
            except ValueError:
                continue
            if frame.msg_id == REGISTER_RESPONSE and len(frame.body) >= 3:
                reply_serial, result_code = struct.unpack_from(">HB", frame.body)
                event.acked.append(reply_serial)
                if result_code == RESULT_OK:
                    event.send.append(self.authenticate(frame.body[3:]))
                else:
                    event.rejected = True
            elif frame.msg_id == PLATFORM_RESPONSE and len(frame.body) >= 5:
                reply_serial, reply_id, result_code = _RESPONSE.unpack_from(frame.body)
                event.acked.append(reply_serial)
                if reply_id == AUTHENTICATE:
                    if result_code == RESULT_OK:
                        event.handshake_done = True
                    else:
                        event.rejected = True
        return event

    def corrupt_checksum(self, frame: bytes) -> bytes:
        inner = unescape(frame[1:-1])
        return b"\x7e" + escape(inner[:-1] + bytes((inner[-1] ^ 0xFF,))) + b"\x7e"


class Jt808Device2019(Jt808Device):
    """A JT/T 808-2019 terminal: version flag, protocol version 1, 10-byte BCD phone."""

    version = 1


SPEC = ProtocolSpec(
    name="jt808",
    split=split,
    decode=decode,
    default_port=5015,
    transports=frozenset({"tcp", "udp"}),
    default_tz="+08:00",
    max_frame=MAX_FRAME,
    device=Jt808Device,
)
