"""Positions API: every terminal's latest fix, a terminal's track (paged JSON) and the track
as a GeoJSON, GPX or CSV download.

Customer tokens see only the terminals now installed in their vehicles, and of those only
the fixes since that installation (a terminal moved from another customer's vehicle does
not show that customer's trips); any other terminal answers 404.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.engine import Connection

from api.deps import ALL_ROLES, Principal, Role, get_database, get_settings, not_found, require_roles
from core.messages import format_time
from core.settings import Settings
from fleet.scope import customer_owns_terminal, customer_terminal_ids
from fleet.service import stored_device_id
from fleet.validation import device_id_candidates
from store.db import Database
from store.export import FORMATS
from store.queries import (
    TrackPage,
    TrackPoint,
    TrackQueryError,
    check_track_range,
    decode_cursor,
    encode_cursor,
    iter_track,
    latest_positions,
    track,
)
from store.tables.positions import terminal_state
from store.tables.registry import installations, terminals, vehicles

router = APIRouter(prefix="/api/v1", tags=["positions"])

# Where vehicles are is the customers' business and the staff's who look after the
# terminals; finance has no need to know.
POSITION_ROLES = sorted(ALL_ROLES - {Role.FINANCE})

_TIME_HELP = "RFC 3339 with a zone, e.g. 2026-11-01T08:00:00Z"
_TIME = "RFC 3339, UTC"


class TrackPointOut(BaseModel):
    terminal_id: str
    fix_time: str = Field(description=_TIME)
    received_at: str = Field(description=_TIME)
    lat: float
    lon: float
    altitude_m: float | None
    speed_kmh: float | None
    course: float | None = Field(description="degrees from north")
    satellites: int | None
    hdop: float | None
    valid: bool
    protocol: str
    flags: int = Field(description="plausibility flags (store.records.Flag); 0 for a plausible fix")
    alarms: list[str]
    attributes: dict[str, Any]


class TrackPageOut(BaseModel):
    terminal_id: str
    start: str = Field(description=_TIME)
    end: str = Field(description=_TIME)
    count: int
    points: list[TrackPointOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last")


class TerminalStateOut(BaseModel):
    terminal_id: str
    protocol: str
    last_seen: str = Field(description=f"latest receive time of any message; {_TIME}")
    fix_time: str | None = Field(description=f"the last plausible fix; {_TIME}")
    fix_received_at: str | None
    lat: float | None
    lon: float | None
    altitude_m: float | None
    speed_kmh: float | None
    course: float | None
    satellites: int | None
    hdop: float | None
    valid: bool | None
    health: dict[str, Any] = Field(description="power_v, battery_level, gsm_signal, ... as last reported")
    attributes: dict[str, Any] = Field(description="every attribute, latest value of each")
    alarms: list[str] = Field(description="alarms of the latest message that carried any")
    alarms_time: str | None


class LatestPositionsOut(BaseModel):
    count: int
    positions: list[TerminalStateOut]


@router.get(
    "/positions/latest", summary="The latest fix of every terminal", response_model=LatestPositionsOut
)
def read_latest_positions(
    terminal_id: list[str] | None = Query(None, description="only these terminals (repeatable)"),
    principal: Principal = Depends(require_roles(*POSITION_ROLES)),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    """Each terminal's last plausible fix, when it was last heard from, and its latest
    health values (power, battery, GSM signal, ...).  Terminals without a fix are left out."""
    with database.engine.connect() as conn:
        wanted = {stored_device_id(conn, t) for t in terminal_id} if terminal_id else None
        customer_id = principal.customer_scope
        if customer_id is not None:
            own = customer_terminal_ids(conn, customer_id)
            wanted = own if wanted is None else wanted & own
        states = latest_positions(conn, wanted)
        if customer_id is not None:
            since = _installed_since(conn, customer_id, [state.terminal_id for state in states])
            states = [s for s in states if s.fix_time and s.fix_time >= since.get(s.terminal_id, s.fix_time)]
    return {"count": len(states), "positions": [state.to_json_dict() for state in states]}


@router.get(
    "/terminals/{terminal_id}/track",
    summary="A terminal's track, one page at a time",
    response_model=TrackPageOut,
)
def read_track(
    terminal_id: str,
    start: datetime | None = Query(None, description=f"from (default: 24 h before end); {_TIME_HELP}"),
    end: datetime | None = Query(None, description=f"until, included (default: now); {_TIME_HELP}"),
    page_size: int | None = Query(None, ge=1, le=100_000, description="fixes per page"),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
    include_flagged: bool = Query(False, description="include implausible fixes (flags != 0)"),
    principal: Principal = Depends(require_roles(*POSITION_ROLES)),
    database: Database = Depends(get_database),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    """Fixes oldest first.  The range may span at most ``store.track_max_days``; follow
    ``next_cursor`` until it is null."""
    start, end = _range(start, end, settings.store.track_max_days)
    with database.engine.connect() as conn:
        terminal_id = _known_terminal(conn, terminal_id)
        visible_start = _visible_start(conn, principal, terminal_id, start)
        try:
            after = decode_cursor(cursor) if cursor else None
            page = (
                track(
                    conn,
                    terminal_id,
                    visible_start,
                    end,
                    page_size or settings.store.track_page_size,
                    after,
                    include_flagged=include_flagged,
                )
                if visible_start <= end
                else TrackPage([], None)
            )
        except TrackQueryError as exc:
            raise _unprocessable(exc) from exc
    return {
        "terminal_id": terminal_id,
        "start": format_time(start),
        "end": format_time(end),
        "count": len(page.points),
        "points": [point.to_json_dict() for point in page.points],
        "next_cursor": encode_cursor(page.next_after) if page.next_after else None,
    }


@router.get(
    "/terminals/{terminal_id}/track.{file_format}",
    summary="A terminal's track as a GeoJSON, GPX or CSV file",
    response_class=StreamingResponse,
)
def export_track(
    terminal_id: str,
    file_format: Literal["geojson", "gpx", "csv"],
    start: datetime | None = Query(None, description=f"from (default: 24 h before end); {_TIME_HELP}"),
    end: datetime | None = Query(None, description=f"until, included (default: now); {_TIME_HELP}"),
    include_flagged: bool = Query(False, description="include implausible fixes (flags != 0)"),
    principal: Principal = Depends(require_roles(*POSITION_ROLES)),
    database: Database = Depends(get_database),
    settings: Settings = Depends(get_settings),
) -> StreamingResponse:
    """The whole range in one file, streamed as it is read."""
    start, end = _range(start, end, settings.store.track_max_days)
    with database.engine.connect() as conn:
        terminal_id = _known_terminal(conn, terminal_id)
        visible_start = _visible_start(conn, principal, terminal_id, start)
    export = FORMATS[file_format]
    points: Iterable[TrackPoint] = (
        iter_track(database.engine, terminal_id, visible_start, end, include_flagged=include_flagged)
        if visible_start <= end
        else ()
    )
    filename = f"{_safe(terminal_id)}-{start.strftime('%Y%m%dT%H%M%SZ')}.{export.extension}"
    return StreamingResponse(
        export.write(points, terminal_id),
        media_type=export.media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _range(start: datetime | None, end: datetime | None, max_days: float) -> tuple[datetime, datetime]:
    """The requested range (default: the last 24 hours), checked against the maximum."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=min(1.0, max_days))
    try:
        check_track_range(start, end, max_days)
    except TrackQueryError as exc:
        raise _unprocessable(exc) from exc
    return start.astimezone(UTC), end.astimezone(UTC)


def _known_terminal(conn: Connection, terminal_id: str) -> str:
    """The stored form of ``terminal_id``; 404 when neither the registry nor the store has heard
    of it (a mistyped id gets an answer, not an empty track)."""
    stored = stored_device_id(conn, terminal_id)
    registered = select(terminals.c.id).where(terminals.c.device_id == stored)
    reported = select(terminal_state.c.terminal_id).where(terminal_state.c.terminal_id == stored)
    if conn.execute(registered).first() is None and conn.execute(reported).first() is None:
        raise not_found("terminal", terminal_id)
    return stored


def _visible_start(conn: Connection, principal: Principal, terminal_id: str, start: datetime) -> datetime:
    """``start``, or for a customer the later of it and the terminal's installation in the
    customer's vehicle; 404 when the customer has no such terminal."""
    customer_id = principal.customer_scope
    if customer_id is None:
        return start
    if not customer_owns_terminal(conn, customer_id, terminal_id):
        raise not_found("terminal", terminal_id)
    since = _installed_since(conn, customer_id, device_id_candidates(terminal_id))
    return max([start, *since.values()])


def _installed_since(conn: Connection, customer_id: int, device_ids: list[str]) -> dict[str, datetime]:
    """When each of ``device_ids`` was installed in the customer's vehicle it is in now:
    a customer sees nothing a terminal reported before (for a previous owner)."""
    rows = conn.execute(
        select(terminals.c.device_id, installations.c.valid_from)
        .select_from(installations.join(terminals).join(vehicles))
        .where(
            installations.c.valid_to.is_(None),
            vehicles.c.customer_id == customer_id,
            terminals.c.device_id.in_(device_ids),
        )
    )
    return {device_id: valid_from for device_id, valid_from in rows}


def _unprocessable(exc: TrackQueryError) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64] or "terminal"
