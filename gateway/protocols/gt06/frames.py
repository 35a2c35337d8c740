"""GT06 frames: protocol numbers, the framer (length, then the 0D 0A fallback), packets and CRC-ITU."""

from __future__ import annotations

import struct

from gateway.protocols.base import (
    ChecksumError,
    FramingError,
    MalformedFrame,
    Split,
)
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

_U16 = struct.Struct(">H")
SERIAL_CRC = struct.Struct(">HH")

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
        total = _U16.unpack_from(buffer, start + 2)[0] + 6
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


def whole_frame(buffer: bytes) -> bool:
    """True when ``buffer`` is exactly one short frame whose length is right (the usual write)."""
    size = len(buffer)
    return size > 5 and buffer[0] == 0x78 == buffer[1] and buffer[2] + 5 == size and buffer.endswith(END)


def split(buffer: bytes) -> Split:
    size = len(buffer)
    if whole_frame(buffer):
        return Split(size, [buffer], 0)  # the usual write
    frames: list[bytes] = []
    garbage = 0
    pos = 0
    while pos < size:
        first = buffer[pos]
        if (first == 0x78 or first == 0x79) and pos + 1 < size and buffer[pos + 1] == first:
            start = pos  # a frame follows the last one, as in nearly every write
        else:
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
        if start + 4 <= size:  # the usual frame, whose length is right, without a call
            if buffer[start] == 0x78:
                end = start + buffer[start + 2] + 5
            else:
                end = start + (buffer[start + 2] << 8 | buffer[start + 3]) + 6
            if end - start <= MAX_FRAME and end <= size and buffer[end - 2 : end] == END:
                frames.append(buffer[start:end])
                pos = end
                continue
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
        head = _U16.pack(length)
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
        length = _U16.unpack_from(frame, 2)[0]
    else:
        raise FramingError("not a GT06 frame (no 7878/7979)")
    if size < header + 1 + 2:
        raise MalformedFrame("frame too short")
    protocol = frame[header]
    if header + length + 2 == size and length >= 5:
        crc_end = size - 4
        serial, expected = SERIAL_CRC.unpack_from(frame, crc_end - 2)
        actual = crc_itu(frame[2:crc_end])
        checksum_ok = actual == expected
        if not checksum_ok and not lenient:
            raise ChecksumError(f"crc {actual:04x} != {expected:04x}")
        return Packet(protocol, frame[header + 1 : crc_end - 2], serial, checksum_ok)
    # The length does not match the frame (a Wi-Fi AP count, a truncated or edited frame):
    # no CRC can be checked.
    if not lenient:
        raise ChecksumError(f"length {length} does not match a {size}-byte frame: CRC not checkable")
    return Packet(protocol, frame[header + 1 : -2 if frame[-2:] == END else size], None, False)


_ECHO_COVERED = struct.Struct(">BBH")  # length, protocol, serial
_ECHO = struct.Struct(">2sBBHH2s")  # the whole echo frame


def reply(protocol: int, serial: int | None, content: bytes = b"") -> bytes:
    if content:
        return encode_packet(protocol, content, serial or 0)
    serial = (serial or 0) & 0xFFFF  # an echo, the usual reply: packed in one go
    return _ECHO.pack(SHORT, 5, protocol, serial, crc_itu(_ECHO_COVERED.pack(5, protocol, serial)), END)
