"""The NOC dashboard: its static page at /dashboard/ (open: it holds no data) and the one
data endpoint it needs beyond the domain routers, the terminal table
``/api/v1/dashboard/terminals`` (registry joined with health and open alerts, searched,
sorted and paged in the database so thousands of terminals stay cheap to poll)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import Connection

from alerts.rules import FAULTS
from api.deps import ALL_ROLES, Principal, get_database, not_found, require_roles
from fleet.validation import plate_search
from store.db import Database
from store.tables.alerts import alerts, terminal_health
from store.tables.registry import customers, installations, terminal_models, terminals, vehicles

router = APIRouter(tags=["dashboard"])

STATIC_DIR = Path(__file__).with_name("dashboard")
# Only these files are served: no directory listing, no path from the request reaches the disk.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# The page keeps a bearer token in sessionStorage: allow nothing but this origin's own files.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidate (ETag) so an upgrade shows at the next load
}

SortKey = Literal[
    "device_id",
    "plate",
    "customer",
    "model",
    "connectivity",
    "last_seen",
    "last_fix_time",
    "power_v",
    "battery_level",
    "gsm_signal",
    "faults",
]


# --------------------------------------------------------------------------- static page


@router.get("/dashboard", include_in_schema=False)
def dashboard_root() -> RedirectResponse:
    return RedirectResponse("/dashboard/", status_code=308)


@router.get("/dashboard/", include_in_schema=False)
def dashboard_index(request: Request) -> Response:
    return _asset(request, "index.html")


@router.get("/dashboard/{name}", include_in_schema=False)
def dashboard_asset(request: Request, name: str) -> Response:
    if name not in ASSETS:
        raise not_found("file", name)
    return _asset(request, name)


def _asset(request: Request, name: str) -> Response:
    """The file, or 304 when the browser's copy (its ETag) is still the current one."""
    content = (STATIC_DIR / name).read_bytes()  # a few kB: read per request, so an upgrade shows at once
    etag = '"' + hashlib.sha256(content).hexdigest()[:20] + '"'
    headers = {**SECURITY_HEADERS, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=ASSETS[name], headers=headers)


# --------------------------------------------------------------------------- terminal table

_open_alerts = and_(alerts.c.terminal_id == terminals.c.device_id, alerts.c.state != "cleared")
_fault_count = select(func.count()).where(_open_alerts).correlate(terminals).scalar_subquery()

_SORT_COLUMNS: dict[str, Any] = {
    "device_id": terminals.c.device_id,
    "plate": vehicles.c.plate,
    "customer": customers.c.name,
    "model": terminal_models.c.name,
    "connectivity": func.coalesce(terminal_health.c.connectivity, "never_seen"),
    "last_seen": terminal_health.c.last_seen,
    "last_fix_time": terminal_health.c.last_fix_time,
    "power_v": terminal_health.c.power_v,
    "battery_level": terminal_health.c.battery_level,
    "gsm_signal": terminal_health.c.gsm_signal,
    "faults": _fault_count,
}

_TABLE = select(
    terminals.c.device_id,
    terminals.c.serial_number,
    terminals.c.status.label("registry_status"),
    terminals.c.enabled,
    terminal_models.c.name.label("model_name"),
    vehicles.c.plate,
    vehicles.c.customer_id,
    customers.c.name.label("customer_name"),
    func.coalesce(terminal_health.c.connectivity, "never_seen").label("connectivity"),
    terminal_health.c.connectivity_since,
    terminal_health.c.last_seen,
    terminal_health.c.last_fix_time,
    terminal_health.c.last_lat,
    terminal_health.c.last_lon,
    terminal_health.c.gnss,
    terminal_health.c.power,
    terminal_health.c.power_v,
    terminal_health.c.battery,
    terminal_health.c.battery_v,
    terminal_health.c.battery_level,
    terminal_health.c.gsm,
    terminal_health.c.gsm_signal,
).select_from(
    terminals.join(terminal_models, terminal_models.c.id == terminals.c.model_id)
    .outerjoin(
        installations,
        and_(installations.c.terminal_id == terminals.c.id, installations.c.valid_to.is_(None)),
    )
    .outerjoin(vehicles, vehicles.c.id == installations.c.vehicle_id)
    .outerjoin(customers, customers.c.id == vehicles.c.customer_id)
    .outerjoin(terminal_health, terminal_health.c.terminal_id == terminals.c.device_id)
)


_SHOW = ("online", "offline", "never_seen", "faulty", *FAULTS)


@router.get(
    "/api/v1/dashboard/terminals",
    summary="The NOC terminal table: registry, health and open faults; searched, sorted, paged",
)
def terminal_table(
    q: str | None = Query(None, max_length=100, description="part of device id, serial, plate or customer"),
    show: str | None = Query(
        None,
        max_length=40,
        description="online, offline, never_seen, faulty, or a fault name (terminals with it open)",
    ),
    sort: SortKey = "device_id",
    order: Literal["asc", "desc"] = "asc",
    limit: int = Query(100, ge=1, le=500),
    offset: int = Query(0, ge=0),
    principal: Principal = Depends(require_roles(*ALL_ROLES)),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    """Scrapped and retired terminals are left out; a customer sees the terminals installed
    in its vehicles now."""
    query = _TABLE.where(terminals.c.retired_at.is_(None), terminals.c.status != "scrapped")
    if principal.customer_scope is not None:
        query = query.where(vehicles.c.customer_id == principal.customer_scope)
    if q:
        pattern = f"%{q.strip()}%"
        query = query.where(
            or_(
                terminals.c.device_id.ilike(pattern),
                terminals.c.serial_number.ilike(pattern),
                vehicles.c.plate.ilike(pattern),
                vehicles.c.plate.contains(plate_search(q)),  # as written on the car: 沪B·20002
                customers.c.name.ilike(pattern),
            )
        )
    if show and show not in _SHOW:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"show must be one of {', '.join(_SHOW)}; got {show!r}",
        )
    if show in ("online", "offline", "never_seen"):
        query = query.where(_SORT_COLUMNS["connectivity"] == show)
    elif show == "faulty":
        query = query.where(exists().where(_open_alerts))
    elif show:
        query = query.where(exists().where(_open_alerts, alerts.c.fault == show))
    column = _SORT_COLUMNS[sort]
    ordering = [
        (column.desc() if order == "desc" else column.asc()).nulls_last(),
        terminals.c.device_id.asc(),
    ]
    with database.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = [
            dict(r) for r in conn.execute(query.order_by(*ordering).limit(limit).offset(offset)).mappings()
        ]
        faults = _open_faults(conn, [r["device_id"] for r in rows])
    items = [{**_plain(row), "faults": faults.get(row["device_id"], [])} for row in rows]
    return {"total": total, "limit": limit, "offset": offset, "items": items}


def _open_faults(conn: Connection, device_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    if not device_ids:
        return {}
    found: dict[str, list[dict[str, Any]]] = {}
    query = (
        select(alerts.c.id, alerts.c.terminal_id, alerts.c.fault, alerts.c.severity, alerts.c.state)
        .where(alerts.c.terminal_id.in_(device_ids), alerts.c.state != "cleared")
        .order_by(alerts.c.id)
    )
    for alert in conn.execute(query).mappings():
        found.setdefault(alert["terminal_id"], []).append(
            {
                "alert_id": alert["id"],
                "fault": alert["fault"],
                "severity": alert["severity"],
                "state": alert["state"],
            }
        )
    return found


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
