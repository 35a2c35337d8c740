"""JT/T 808 frames: message ids, the framer, escaping, the header and the XOR check."""

from __future__ import annotations

import struct

from gateway.protocols.base import (
    ChecksumError,
    FramingError,
    MalformedFrame,
    Split,
    parse_tz,
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

_U16 = struct.Struct(">H")
_HEAD = struct.Struct(">HH")
HEAD_2013 = struct.Struct(">HH6sH")  # id, props, phone, serial
_SUBPACKAGE = struct.Struct(">HH")

# --------------------------------------------------------------------------- framing


def whole_frame(buffer: bytes) -> bool:
    """True when ``buffer`` is exactly one 7E-delimited frame (the usual write)."""
    return len(buffer) > MIN_INNER + 1 and buffer[0] == FLAG and buffer.find(b"\x7e", 1) == len(buffer) - 1


def split(buffer: bytes) -> Split:
    """Cut 7E-delimited frames (and the vendor text frames ``(...)`` sent on the same port);
    bytes before a flag are garbage, as are two flags too close to hold a frame (the first
    closed a frame whose start was lost)."""
    size = len(buffer)
    if whole_frame(buffer):
        return Split(size, [buffer], 0)  # the usual write
    frames: list[bytes] = []
    garbage = 0
    pos = 0
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
        digits = phone_bcd.hex()
        self.terminal_id = digits if len(digits) == 12 else phone_id(phone_bcd)
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
    msg_id, props, phone, serial = HEAD_2013.unpack_from(inner)
    if not props & (PROPS_VERSION | PROPS_SUBPACKAGE) and msg_id not in VENDOR_LOCATIONS:
        body = inner[12:-1]  # the usual frame: 2013 header, whole message
        if len(body) != props & PROPS_LENGTH and not lenient:
            raise MalformedFrame(f"body is {len(body)} bytes, header says {props & PROPS_LENGTH}")
        return Frame(msg_id, props, None, phone, serial, body, None, checksum_ok)
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
