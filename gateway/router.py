"""The gateway's API: the quarantine list (claim, assign, dismiss), hex logging per terminal
switched at run time, and the gateway's status; staff only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update

from api.deps import STAFF_ROLES, Principal, get_database, not_found, require_roles
from api.health import Check
from gateway.hexlog import load_switches, save_switch
from gateway.quarantine import quarantine_row
from store.db import Database
from store.tables.gateway import gateway_quarantine, mqtt_dead_letters
from store.tables.registry import terminals

router = APIRouter(prefix="/api/v1/gateway", tags=["gateway"])

STAFF = require_roles(*STAFF_ROLES)
NOC = require_roles("admin", "manager", "noc")
SUPPORT = require_roles("admin", "manager", "noc", "technician")


class HexLogSwitch(BaseModel):
    on: bool
    minutes: int | None = Field(default=60, ge=1, le=7 * 24 * 60, description="switch off after; null: never")


class QuarantineNote(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


def _gateway(request: Request) -> Any:
    """The gateway running in this process, or None (API-only role)."""
    return request.app.state.services.get("gateway")


def _json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


# --------------------------------------------------------------------------- status


@router.get("/status", summary="Listeners, connections, writer, spool, serial ports and MQTT")
def gateway_status(
    request: Request, _: Principal = Depends(STAFF), database: Database = Depends(get_database)
) -> dict[str, Any]:
    gateway = _gateway(request)
    with database.engine.connect() as conn:
        waiting = conn.execute(
            select(gateway_quarantine.c.status, func.count()).group_by(gateway_quarantine.c.status)
        ).all()
        dead_letters = conn.execute(select(func.count()).select_from(mqtt_dead_letters)).scalar_one()
    body: dict[str, Any] = {
        "running_here": gateway is not None,
        "quarantine": {row[0]: row[1] for row in waiting},
        "mqtt_dead_letters": dead_letters,
    }
    if gateway is not None:
        body.update(_json(gateway.status()))
    return body


# --------------------------------------------------------------------------- quarantine


@router.get("/quarantine", summary="Terminals the registry does not know, newest first")
def list_quarantine(
    status_: str | None = Query(default=None, alias="status", pattern="^(new|claimed|assigned|dismissed)$"),
    limit: int = Query(default=200, ge=1, le=5000),
    _: Principal = Depends(STAFF),
    database: Database = Depends(get_database),
) -> list[dict[str, Any]]:
    query = select(gateway_quarantine).order_by(gateway_quarantine.c.last_seen.desc()).limit(limit)
    if status_:
        query = query.where(gateway_quarantine.c.status == status_)
    with database.engine.connect() as conn:
        return [_json(quarantine_row(row)) for row in conn.execute(query).all()]


def _quarantined(conn: Any, device_id: str) -> Any:
    row = conn.execute(select(gateway_quarantine).where(gateway_quarantine.c.device_id == device_id)).first()
    if row is None:
        raise not_found("quarantined terminal", device_id)
    return row


@router.post("/quarantine/{device_id}/claim", summary="Take an unknown terminal to sort out")
def claim(
    device_id: str,
    body: QuarantineNote | None = None,
    principal: Principal = Depends(NOC),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    with database.engine.begin() as conn:
        row = _quarantined(conn, device_id)
        if row.status == "claimed" and row.claimed_by != principal.name:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail=f"{device_id} is claimed by {row.claimed_by}"
            )
        if row.status in ("assigned", "dismissed"):
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"{device_id} is already {row.status}")
        conn.execute(
            update(gateway_quarantine)
            .where(gateway_quarantine.c.id == row.id)
            .values(
                status="claimed",
                claimed_by=principal.name,
                claimed_at=datetime.now(UTC),
                note=_note(body, row),
            )
        )
        return _json(quarantine_row(_quarantined(conn, device_id)))


@router.post(
    "/quarantine/{device_id}/assign",
    summary="Close the case: the terminal is now in the registry (register it first)",
)
def assign(
    device_id: str,
    request: Request,
    body: QuarantineNote | None = None,
    principal: Principal = Depends(NOC),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    with database.engine.begin() as conn:
        row = _quarantined(conn, device_id)
        if row.status in ("assigned", "dismissed"):
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"{device_id} is already {row.status}")
        registered = conn.execute(select(terminals.c.id).where(terminals.c.device_id == device_id)).first()
        if registered is None:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"{device_id} is not in the registry yet: register the terminal, then assign",
            )
        conn.execute(
            update(gateway_quarantine)
            .where(gateway_quarantine.c.id == row.id)
            .values(
                status="assigned",
                assigned_by=principal.name,
                assigned_at=datetime.now(UTC),
                note=_note(body, row),
            )
        )
        result = _json(quarantine_row(_quarantined(conn, device_id)))
    gateway = _gateway(request)
    if gateway is not None:
        gateway.cache.forget(device_id)  # accept it at once, not when the cached "unknown" expires
    return result


@router.post("/quarantine/{device_id}/dismiss", summary="Not one of ours: stop listing it")
def dismiss(
    device_id: str,
    body: QuarantineNote | None = None,
    principal: Principal = Depends(NOC),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    with database.engine.begin() as conn:
        row = _quarantined(conn, device_id)
        conn.execute(
            update(gateway_quarantine)
            .where(gateway_quarantine.c.id == row.id)
            .values(
                status="dismissed",
                assigned_by=principal.name,
                assigned_at=datetime.now(UTC),
                note=_note(body, row),
            )
        )
        return _json(quarantine_row(_quarantined(conn, device_id)))


def _note(body: QuarantineNote | None, row: Any) -> str | None:
    return body.note if body is not None and body.note is not None else row.note


# --------------------------------------------------------------------------- hex log


@router.get("/hexlog", summary="Terminals whose frames are logged as hex")
def hexlog_switches(
    _: Principal = Depends(SUPPORT), database: Database = Depends(get_database)
) -> dict[str, Any]:
    with database.engine.connect() as conn:
        switches = load_switches(conn)
    return {device: (until.isoformat() if until else None) for device, until in sorted(switches.items())}


@router.put("/hexlog/{device_id}", summary="Switch hex logging of one terminal on or off")
def switch_hexlog(
    device_id: str,
    body: HexLogSwitch,
    request: Request,
    principal: Principal = Depends(SUPPORT),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    until = datetime.now(UTC) + timedelta(minutes=body.minutes) if body.on and body.minutes else None
    with database.engine.begin() as conn:
        save_switch(conn, device_id, body.on, principal.name, until)
    gateway = _gateway(request)
    if gateway is not None:
        if body.on:
            gateway.hexlog.enable(device_id, until)
        else:
            gateway.hexlog.disable(device_id)
    return {"device_id": device_id, "on": body.on, "until": until.isoformat() if until else None}


@router.get("/hexlog/{device_id}/frames", summary="The terminal's latest frames in and out, as hex")
def hexlog_frames(device_id: str, request: Request, _: Principal = Depends(SUPPORT)) -> dict[str, Any]:
    gateway = _gateway(request)
    if gateway is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no gateway runs in this API process")
    return {
        "device_id": device_id,
        "logging": gateway.hexlog.enabled(device_id),
        "frames": gateway.hexlog.recent(device_id),
    }


# --------------------------------------------------------------------------- /health


def health_check(gateway: Any) -> Callable[[], Check]:
    """The gateway's part of /health: red while the spool is full or reading is paused."""

    def check() -> Check:
        results = gateway.health()
        ok = all(result[1] for result in results)
        return Check("gateway", ok, "; ".join(f"{name}: {detail}" for name, _, detail in results))

    return check
