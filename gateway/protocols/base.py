"""What every protocol module provides: a framer, a pure decoder and its replies.

A protocol module exposes one ``SPEC = ProtocolSpec(...)`` and is added to the gateway
with one line in ``gateway/protocols/__init__.py``.

Framer contract (pymodbus style): ``split(buffer) -> Split``.  The function looks at the
bytes buffered so far and returns how many it used and the whole frames found in them.
``consumed == 0`` means "need more bytes".  Bytes that cannot start a frame are consumed
and reported in ``Split.garbage``.  ``StreamFramer`` owns the buffer, bounds it and
forces a resync when a frame never completes.  A protocol may also give a
``whole_frame(buffer) -> bool`` test: True when the buffer is exactly one whole frame (as
nearly every device write is), which the framer then passes on without calling ``split``;
it must agree with ``split`` (whose result would be that one frame, all bytes consumed).

Decoder contract: ``decode(frame, context) -> Decoded``.  Pure: no sockets, no database,
no registry.  A frame it cannot read raises a ``ProtocolError`` subclass; the session
catches it, logs the frame as hex, counts it and goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from core.messages import Message

# --------------------------------------------------------------------------- errors


class ProtocolError(ValueError):
    """A frame that cannot be decoded.  ``kind`` names the failure for counters and CLI."""

    kind = "protocol"

    def __str__(self) -> str:
        return f"{self.kind}: {super().__str__()}"


class FramingError(ProtocolError):
    kind = "framing"


class ChecksumError(ProtocolError):
    kind = "checksum"


class MalformedFrame(ProtocolError):
    """Wrong length, a field out of range, a truncated body."""

    kind = "malformed"


class UnsupportedMessage(ProtocolError):
    """A well-formed frame of a message type this decoder does not read."""

    kind = "unsupported"


class SessionError(ProtocolError):
    """The frame is fine but the session lacks what it needs (no login yet)."""

    kind = "session"


# --------------------------------------------------------------------------- framing


@dataclass(slots=True)
class Split:
    consumed: int
    frames: list[bytes]
    garbage: int = 0


SplitFn = Callable[[bytes], Split]
WholeFrameFn = Callable[[bytes], bool]


class StreamFramer:
    """Buffers a byte stream and cuts it into frames with a protocol's ``split``.

    The buffer is bounded by ``max_buffer``: when it is full and no frame completes, the
    oldest byte is dropped as garbage so that ``split`` resyncs on the next start marker.
    """

    __slots__ = ("_split", "_whole_frame", "_buffer", "max_buffer", "frames", "garbage_bytes", "overflows")

    def __init__(
        self, split: SplitFn, max_buffer: int = 4096, whole_frame: WholeFrameFn | None = None
    ) -> None:
        self._split = split
        self._whole_frame = whole_frame
        self._buffer = b""
        self.max_buffer = max_buffer
        self.frames = 0
        self.garbage_bytes = 0
        self.overflows = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        whole_frame = self._whole_frame
        if whole_frame is not None and not self._buffer and data.__class__ is bytes and whole_frame(data):
            self.frames += 1  # the usual write: one whole frame
            return [data]
        buffer = self._buffer + data if self._buffer else bytes(data)
        if not buffer:
            return []
        result = self._split(buffer)
        if result.consumed == len(buffer):  # the usual write: whole frames, nothing left over
            if result.garbage:
                self.garbage_bytes += result.garbage
            self._buffer = b""
            self.frames += len(result.frames)
            return result.frames
        out: list[bytes] = []
        while True:
            if result.garbage:
                self.garbage_bytes += result.garbage
            if result.frames:
                out.extend(result.frames)
            if result.consumed:
                buffer = buffer[result.consumed :]
            elif len(buffer) > self.max_buffer:
                self.overflows += 1
                self.garbage_bytes += 1
                buffer = buffer[1:]
            else:
                break
            if not buffer:
                break
            result = self._split(buffer)
        self._buffer = buffer
        self.frames += len(out)
        return out

    def clear(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


# --------------------------------------------------------------------------- decoding


@dataclass(slots=True)
class DecodeContext:
    """What a decoder may know beyond the frame: the session, never the database."""

    terminal_id: str | None = None
    tz: tzinfo = UTC  # the zone the terminal reports local times in
    lenient: bool = False  # accept wrong checksums, flag them with checksum_ok=False
    transport: str = "tcp"  # "tcp", "udp", "serial", "mqtt"
    received_at: datetime | None = None  # for replies that carry the server time
    options: Mapping[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # per-session protocol scratch

    def now(self) -> datetime:
        return self.received_at or datetime.now(UTC)


@dataclass(slots=True)
class Decoded:
    messages: list[Message]
    reply: bytes | None = None
    terminal_id: str | None = None  # identity this frame announced (login, IMEI line)


DecodeFn = Callable[[bytes, DecodeContext], Decoded]


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    name: str
    split: SplitFn
    decode: DecodeFn
    default_port: int
    transports: frozenset[str]
    text: bool = False  # frames are text lines (decode CLI reads --text by default)
    default_tz: str = "UTC"  # "UTC" or a fixed offset "+08:00"
    max_frame: int = 4096
    # Terminals that hang up between reports: "no connection" is not "offline".
    disconnects_between_reports: bool = False
    # A UDP datagram is one frame; a protocol may frame it differently from TCP.
    split_datagram: SplitFn | None = None
    # The terminal's side, for simulators: DeviceCodec subclass of this protocol.
    device: type[DeviceCodec] | None = None
    # True when a stream buffer is exactly one whole frame: see StreamFramer.
    whole_frame: WholeFrameFn | None = None

    def framer(self, max_buffer: int | None = None) -> StreamFramer:
        return StreamFramer(self.split, max_buffer or self.max_frame * 2, self.whole_frame)


def parse_tz(text: str) -> tzinfo:
    """ "UTC", "Z", "+08:00", "-0530" or "8" (hours) to a fixed-offset tzinfo."""
    value = text.strip()
    if value.upper() in ("UTC", "Z", "GMT", ""):
        return UTC
    if value.upper().startswith(("UTC", "GMT")):
        value = value[3:]
    sign = -1 if value.startswith("-") else 1
    value = value.lstrip("+-")
    if ":" in value:
        hours, minutes = value.split(":", 1)
    elif len(value) == 4 and value.isdigit():
        hours, minutes = value[:2], value[2:]
    else:
        hours, minutes = value, "0"
    try:
        offset = timedelta(hours=int(hours), minutes=int(minutes))
    except ValueError as exc:
        raise ValueError(f"not a time zone offset: {text!r}") from exc
    if offset > timedelta(hours=14):
        raise ValueError(f"time zone offset out of range: {text!r}")
    return timezone(sign * offset) if offset else UTC


# --------------------------------------------------------------------------- device side


@dataclass(slots=True)
class Outgoing:
    """A frame a (simulated) terminal sends, and how it will know it was acknowledged."""

    data: bytes
    seq: int | None = None  # serial number the server's acknowledgement will name
    needs_ack: bool = True  # a real device waits for and retransmits without an ack


@dataclass(slots=True)
class ReplyEvent:
    """What a terminal makes of bytes the server sent it."""

    acked: list[int] = field(default_factory=list)  # seqs of Outgoing frames now acknowledged
    send: list[Outgoing] = field(
        default_factory=list
    )  # frames the terminal must send next (auth after register)
    handshake_done: bool = False  # login/registration/authentication accepted
    rejected: bool = False  # the server refused the login


class DeviceCodec(ABC):
    """The terminal's side of a protocol, for simulators and tests: frames a real device of
    this protocol sends, built with the same encoders the gateway uses, and the reading of
    the server's replies.  Stateful per terminal (serial counter, auth code).

    Each protocol module provides a subclass and sets ``ProtocolSpec.device`` to it.
    """

    protocol = ""

    def __init__(self, terminal_id: str, *, tz: tzinfo = UTC, transport: str = "tcp") -> None:
        self.terminal_id = terminal_id
        self.tz = tz
        self.transport = transport
        self.seq = 0

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def handshake(self) -> Outgoing | None:
        """First frame after connecting (login, registration, IMEI); None if the protocol has none."""
        return None

    @abstractmethod
    def position(self, message: Message) -> Outgoing:
        """One fix (``message.time`` is UTC; the codec converts to the device's zone),
        carrying ``message.alarms`` and the health attributes it can express."""

    def positions(self, messages: list[Message]) -> Outgoing | None:
        """Several stored fixes in one frame (JT/T 808 0x0704, Teltonika multi-record);
        None when the protocol cannot batch."""
        return None

    def heartbeat(self, attributes: Mapping[str, Any] | None = None) -> Outgoing | None:
        return None

    def status(self, attributes: Mapping[str, Any], alarms: list[str]) -> Outgoing | None:
        """A status/alarm/info frame without a fix (power, battery, signal, ICCID), if any."""
        return None

    def on_reply(self, data: bytes) -> ReplyEvent:
        """Read bytes the server sent (may hold several replies)."""
        return ReplyEvent()

    def corrupt_checksum(self, frame: bytes) -> bytes:
        """The same frame with a wrong checksum (fault injection); unchanged if it has none."""
        return frame
