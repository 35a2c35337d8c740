"""The one normalised message model every decoder produces and every later stage reads.

Units are fixed: time is UTC (an aware ``datetime``), coordinates in degrees, speed in
km/h, course in degrees from north, altitude in metres.  What a frame does not carry is
``None``.  Attribute keys come from ``core.vocabulary.Attr``; alarm names from
``core.vocabulary.Alarm``.  Attribute values are JSON values only (str, int, float, bool,
None, lists and dicts of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class MessageType(StrEnum):
    POSITION = "position"
    HEARTBEAT = "heartbeat"
    LOGIN = "login"
    STATUS = "status"
    ALARM = "alarm"
    INFO = "info"  # terminal attributes, ICCID, firmware, ...
    COMMAND_RESULT = "command_result"
    TIME_REQUEST = "time_request"


@dataclass(slots=True)
class Message:
    type: MessageType
    terminal_id: str | None = None
    time: datetime | None = None
    valid: bool | None = None
    lat: float | None = None
    lon: float | None = None
    speed_kmh: float | None = None
    course: float | None = None
    altitude_m: float | None = None
    satellites: int | None = None
    hdop: float | None = None
    alarms: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def has_fix(self) -> bool:
        return self.lat is not None and self.lon is not None and self.time is not None

    def to_json_dict(self) -> dict[str, Any]:
        """The public JSON shape (the decode command and the API use it)."""
        return {
            "type": str(self.type),
            "terminal_id": self.terminal_id,
            "time": format_time(self.time),
            "valid": self.valid,
            "lat": self.lat,
            "lon": self.lon,
            "speed_kmh": self.speed_kmh,
            "course": self.course,
            "altitude_m": self.altitude_m,
            "satellites": self.satellites,
            "hdop": self.hdop,
            "alarms": list(self.alarms),
            "attributes": dict(self.attributes),
        }


def format_time(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``; whole seconds unless the value has a fraction."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


KNOT_KMH = 1.852


def knots_to_kmh(knots: float) -> float:
    return round(knots * KNOT_KMH, 3)
