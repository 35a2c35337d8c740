"""Row builders of the store tests (the migrated ``database`` fixture is in tests/conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from store.records import EventRow, PositionRow

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def position(terminal_id: str = "T1", seconds: float = 0, **values: Any) -> PositionRow:
    """A valid fix ``seconds`` after T0, received one second later."""
    fix_time = T0 + timedelta(seconds=seconds)
    fields: dict[str, Any] = {
        "terminal_id": terminal_id,
        "fix_time": fix_time,
        "received_at": fix_time + timedelta(seconds=1),
        "protocol": "gt06",
        "valid": True,
        "lat": 48.8566 + seconds * 1e-5,
        "lon": 2.3522 + seconds * 1e-5,
        "altitude_m": 35.0,
        "speed_kmh": 42.5,
        "course": 90.0,
        "satellites": 9,
        "hdop": 0.9,
    }
    fields.update(values)
    return PositionRow(**fields)


def event(terminal_id: str = "T1", seconds: float = 0, type: str = "heartbeat", **values: Any) -> EventRow:
    time = T0 + timedelta(seconds=seconds)
    fields: dict[str, Any] = {
        "terminal_id": terminal_id,
        "time": time,
        "received_at": time + timedelta(seconds=1),
        "protocol": "gt06",
        "type": type,
    }
    fields.update(values)
    return EventRow(**fields)
