"""The JT/T 808 terminal side: registration, authentication and reports, for simulators."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from core.messages import Message
from gateway.protocols.base import (
    DeviceCodec,
    Outgoing,
    ReplyEvent,
)
from gateway.protocols.binary import (
    bcd_encode,
    report_without_fix,
)
from gateway.protocols.jt808.frames import (
    AUTHENTICATE,
    BATCH,
    CHINA_TIME,
    HEARTBEAT,
    LOCATION,
    PLATFORM_RESPONSE,
    REGISTER,
    REGISTER_RESPONSE,
    RESULT_OK,
    encode_frame,
    escape,
    open_frame,
    split,
    unescape,
)
from gateway.protocols.jt808.location import (
    encode_location,
)

_U16 = struct.Struct(">H")
_RESPONSE = struct.Struct(">HHB")  # reply serial, reply id, result


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
