"""Small helpers shared by the binary protocol modules (JT/T 808, GT06, Teltonika).

Device clock fields to UTC, BCD digits, and the 2-digit/4-bit tables that keep the hot
decode paths free of per-byte Python work.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from core.messages import Message, MessageType
from gateway.protocols.base import MalformedFrame

# BCD byte -> its two-digit value; a nibble above 9 maps to a value no date field accepts,
# so a corrupt BCD time fails in ``datetime`` and becomes MalformedFrame.
_INVALID = 10_000
BCD: tuple[int, ...] = tuple(
    (byte >> 4) * 10 + (byte & 0x0F) if (byte >> 4) < 10 and (byte & 0x0F) < 10 else _INVALID
    for byte in range(256)
)


def device_time(year: int, month: int, day: int, hour: int, minute: int, second: int, tz: tzinfo) -> datetime:
    """A clock reading in the device's zone ``tz`` as an aware UTC datetime."""
    # positional arguments: datetime parses keywords at twice the cost, on every fix
    try:
        if tz is UTC:
            return datetime(year, month, day, hour, minute, second, 0, UTC)
        offset = tz.utcoffset(None)
        if offset is not None:  # fixed offset: cheaper than astimezone
            return datetime(year, month, day, hour, minute, second, 0, UTC) - offset
        return datetime(year, month, day, hour, minute, second, 0, tz).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise MalformedFrame(
            f"bad time {year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
        ) from exc


class DeviceClock:
    """Six-byte device clocks ``YY MM DD hh mm ss`` (BCD or binary) to UTC, a fix at a time.

    A terminal reports many fixes within one hour of its clock.  ``hours`` maps the first
    four bytes of a reading (as a big-endian int) to the zone and the UTC start of that
    hour; ``minutes_seconds`` maps the last two bytes to their timedelta.  A decoder looks
    both up inline and adds them, and calls ``reading`` when either misses: that decodes
    and checks the six fields as ``device_time`` does and remembers the hour.  Only zones
    with a fixed offset are remembered (a zone with daylight saving time may change its
    offset within an hour)."""

    __slots__ = ("bcd", "hours", "minutes_seconds")

    MAX_HOURS = 4096

    def __init__(self, *, bcd: bool) -> None:
        self.bcd = bcd
        self.hours: dict[int, tuple[tzinfo, datetime]] = {}
        encode = _bcd_byte if bcd else int
        self.minutes_seconds: dict[int, timedelta] = {
            encode(minute) << 8 | encode(second): timedelta(minutes=minute, seconds=second)
            for minute in range(60)
            for second in range(60)
        }

    def reading(self, hour_key: int, minute_second: int, tz: tzinfo) -> datetime:
        raw = hour_key.to_bytes(4, "big") + minute_second.to_bytes(2, "big")
        year, month, day, hour, minute, second = (BCD[byte] for byte in raw) if self.bcd else raw
        time = device_time(2000 + year, month, day, hour, minute, second, tz)
        if tz.utcoffset(None) is not None:
            if len(self.hours) >= self.MAX_HOURS:
                self.hours.clear()
            self.hours[hour_key] = (tz, time - timedelta(minutes=minute, seconds=second))
        return time


def _bcd_byte(value: int) -> int:
    return (value // 10) << 4 | value % 10


def to_device_clock(value: datetime, tz: tzinfo) -> datetime:
    """The inverse of ``device_time``: a UTC datetime as the device's local wall clock."""
    return value.astimezone(tz)


def bcd_encode(digits: str, size: int) -> bytes:
    """Decimal digits as ``size`` BCD bytes, left-padded with zeros."""
    text = digits.rjust(size * 2, "0")
    if len(text) != size * 2 or not text.isdigit():
        raise ValueError(f"{digits!r} does not fit {size} BCD bytes")
    return bytes.fromhex(text)


def digits_of(data: bytes) -> str:
    """BCD bytes as a digit string, padding nibbles (F) dropped."""
    return data.hex().rstrip("f")


def ascii_text(data: bytes) -> str:
    """A fixed-width text field: NUL and space padding removed, undecodable bytes replaced."""
    return data.split(b"\x00", 1)[0].decode("ascii", "replace").strip()


def report_without_fix(terminal_id: str, attributes: Mapping[str, Any], alarms: list[str]) -> Message:
    """What a terminal reports, now, when it has no fix: its alarms and IO state."""
    return Message(
        MessageType.STATUS,
        terminal_id,
        datetime.now(UTC),
        valid=False,
        alarms=list(alarms),
        attributes=dict(attributes),
    )
