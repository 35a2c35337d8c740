"""What the gateway hands the store: rows ready to be written, in one batch per commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Flag:
    """Plausibility flags on a stored position (bit set).  A flagged fix is kept but never
    becomes the terminal's latest position and never raises movement alerts."""

    FUTURE = 1  # fix time too far ahead of receive time
    NO_FIX = 2  # the device says the fix is invalid
    ZERO = 4  # 0,0 or out-of-range coordinates
    JUMP = 8  # implied speed from the previous fix is impossible
    STALE = 16  # older than the latest fix already stored (archived upload)


@dataclass(slots=True)
class PositionRow:
    terminal_id: str
    fix_time: datetime  # UTC, aware
    received_at: datetime  # UTC, aware
    protocol: str
    valid: bool
    lat: float
    lon: float
    altitude_m: float | None = None
    speed_kmh: float | None = None
    course: float | None = None
    satellites: int | None = None
    hdop: float | None = None
    alarms: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None
    flags: int = 0


@dataclass(slots=True)
class EventRow:
    """A message that is not a position: heartbeat, login, status, alarm, info."""

    terminal_id: str
    time: datetime  # device time when the message has one, else receive time
    received_at: datetime
    protocol: str
    type: str  # core.messages.MessageType value
    alarms: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None


@dataclass(slots=True)
class IngestBatch:
    positions: list[PositionRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.positions) + len(self.events)


@dataclass(slots=True)
class WriteResult:
    inserted: int = 0  # positions newly stored
    duplicates: int = 0  # positions already stored (same terminal and fix time): a no-op
    events: int = 0  # events newly stored
