"""Reading positions back: every terminal's latest state and fix, and a terminal's track
over a time range, keyset-paged on fix time (unique per terminal, so no row is skipped or
repeated between pages however many arrive meanwhile)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import Connection, Engine, Row

from core.messages import format_time
from core.vocabulary import HEALTH_ATTRIBUTES
from store.tables.base import from_epoch_us, to_epoch_us
from store.tables.positions import positions, terminal_state


class TrackQueryError(ValueError):
    """A track request that cannot be answered as asked; the message says why."""


class TrackRangeTooLong(TrackQueryError):
    def __init__(self, max_days: float) -> None:
        super().__init__(f"the track time range may span at most {max_days:g} days; ask for a shorter range")
        self.max_days = max_days


class InvalidCursor(TrackQueryError):
    def __init__(self) -> None:
        super().__init__("invalid cursor: use the next_cursor of the previous page unchanged")


@dataclass(frozen=True, slots=True)
class TrackPoint:
    terminal_id: str
    fix_time: datetime
    received_at: datetime
    lat: float
    lon: float
    altitude_m: float | None
    speed_kmh: float | None
    course: float | None
    satellites: int | None
    hdop: float | None
    valid: bool
    protocol: str
    flags: int
    alarms: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "terminal_id": self.terminal_id,
            "fix_time": format_time(self.fix_time),
            "received_at": format_time(self.received_at),
            "lat": self.lat,
            "lon": self.lon,
            "altitude_m": self.altitude_m,
            "speed_kmh": self.speed_kmh,
            "course": self.course,
            "satellites": self.satellites,
            "hdop": self.hdop,
            "valid": self.valid,
            "protocol": self.protocol,
            "flags": self.flags,
            "alarms": list(self.alarms),
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True, slots=True)
class TrackPage:
    points: list[TrackPoint]
    next_after: datetime | None  # pass as ``after`` for the next page; None: this was the last


@dataclass(frozen=True, slots=True)
class TerminalState:
    """A terminal's latest state: last seen, its last unflagged fix, its health values."""

    terminal_id: str
    protocol: str
    last_seen: datetime
    fix_time: datetime | None
    fix_received_at: datetime | None
    lat: float | None
    lon: float | None
    altitude_m: float | None
    speed_kmh: float | None
    course: float | None
    satellites: int | None
    hdop: float | None
    valid: bool | None
    health: dict[str, Any]  # core.vocabulary.HEALTH_ATTRIBUTES that are known
    attributes: dict[str, Any]
    alarms: list[str]
    alarms_time: datetime | None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "terminal_id": self.terminal_id,
            "protocol": self.protocol,
            "last_seen": format_time(self.last_seen),
            "fix_time": format_time(self.fix_time),
            "fix_received_at": format_time(self.fix_received_at),
            "lat": self.lat,
            "lon": self.lon,
            "altitude_m": self.altitude_m,
            "speed_kmh": self.speed_kmh,
            "course": self.course,
            "satellites": self.satellites,
            "hdop": self.hdop,
            "valid": self.valid,
            "health": dict(self.health),
            "attributes": dict(self.attributes),
            "alarms": list(self.alarms),
            "alarms_time": format_time(self.alarms_time),
        }


def terminal_states(conn: Connection, terminal_ids: Collection[str] | None = None) -> list[TerminalState]:
    """The state of every terminal heard from (or of those in ``terminal_ids``), by id."""
    if terminal_ids is not None and not terminal_ids:
        return []
    query = select(terminal_state).order_by(terminal_state.c.terminal_id)
    if terminal_ids is not None:
        query = query.where(terminal_state.c.terminal_id.in_(list(terminal_ids)))
    return [_state(row) for row in conn.execute(query)]


def latest_positions(conn: Connection, terminal_ids: Collection[str] | None = None) -> list[TerminalState]:
    """The latest unflagged fix of every terminal that has one (optionally only of
    ``terminal_ids``), with when it was last heard from and its health values."""
    if terminal_ids is not None and not terminal_ids:
        return []
    query = (
        select(terminal_state)
        .where(terminal_state.c.fix_time.is_not(None))
        .order_by(terminal_state.c.terminal_id)
    )
    if terminal_ids is not None:
        query = query.where(terminal_state.c.terminal_id.in_(list(terminal_ids)))
    return [_state(row) for row in conn.execute(query)]


def check_track_range(start: datetime, end: datetime, max_days: float | None) -> None:
    """Raise ``TrackQueryError`` unless ``start`` <= ``end`` (both aware) span at most
    ``max_days`` (None: no limit)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise TrackQueryError("start and end need a time zone (e.g. 2026-11-01T00:00:00Z)")
    if end < start:
        raise TrackQueryError("end is before start")
    if max_days is not None and end - start > timedelta(days=max_days):
        raise TrackRangeTooLong(max_days)


_TRACK_COLUMNS = [column for column in positions.columns if column.name != "raw"]


def _track_query(
    terminal_id: str, start: datetime, end: datetime, after: datetime | None, include_flagged: bool
) -> Select[Any]:
    query = select(*_TRACK_COLUMNS).where(
        positions.c.terminal_id == terminal_id,
        positions.c.fix_time >= start,
        positions.c.fix_time <= end,
    )
    if after is not None:
        query = query.where(positions.c.fix_time > after)
    if not include_flagged:
        query = query.where(positions.c.flags == 0)
    return query.order_by(positions.c.fix_time)


def track(
    conn: Connection,
    terminal_id: str,
    start: datetime,
    end: datetime,
    page_size: int,
    after: datetime | None = None,
    *,
    max_days: float | None = None,
    include_flagged: bool = False,
) -> TrackPage:
    """One page of a terminal's fixes with ``start <= fix_time <= end``, oldest first,
    after ``after`` (the previous page's ``next_after``).  Flagged fixes (implausible:
    jumps, 0,0, no fix) are left out unless ``include_flagged``.  A range longer than
    ``max_days`` raises ``TrackRangeTooLong``."""
    check_track_range(start, end, max_days)
    if page_size < 1:
        raise TrackQueryError("page_size must be at least 1")
    query = _track_query(terminal_id, start, end, after, include_flagged).limit(page_size + 1)
    points = [_point(row) for row in conn.execute(query)]
    if len(points) > page_size:
        del points[page_size:]
        return TrackPage(points, points[-1].fix_time)
    return TrackPage(points, None)


def iter_track(
    engine: Engine,
    terminal_id: str,
    start: datetime,
    end: datetime,
    *,
    chunk: int = 5000,
    include_flagged: bool = False,
) -> Iterator[TrackPoint]:
    """Every fix of the range, oldest first, read ``chunk`` at a time with a connection
    taken per chunk: a slow consumer (a streamed export) holds no connection meanwhile."""
    after = None
    while True:
        with engine.connect() as conn:
            page = track(conn, terminal_id, start, end, chunk, after, include_flagged=include_flagged)
        yield from page.points
        if page.next_after is None:
            return
        after = page.next_after


def encode_cursor(after: datetime) -> str:
    """An opaque cursor for ``after`` (what the API hands out as ``next_cursor``)."""
    return base64.urlsafe_b64encode(str(to_epoch_us(after)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> datetime:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return from_epoch_us(int(text))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError) as exc:
        raise InvalidCursor() from exc


def _point(row: Row[Any]) -> TrackPoint:
    values = dict(row._mapping)
    values.update(valid=bool(row.valid), alarms=row.alarms or [], attributes=row.attributes or {})
    return TrackPoint(**values)


_STATE_FIELDS = {f for f in TerminalState.__dataclass_fields__ if f != "health"}


def _state(row: Row[Any]) -> TerminalState:
    values = row._mapping
    fields = {name: values[name] for name in _STATE_FIELDS}
    fields.update(
        valid=None if row.valid is None else bool(row.valid),
        attributes=row.attributes or {},
        alarms=row.alarms or [],
        health={key: values[key] for key in HEALTH_ATTRIBUTES if values[key] is not None},
    )
    return TerminalState(**fields)
