"""The API of health, alerts and repair tickets: /api/v1/health, /terminals/{id}/health,
/alerts (filter, acknowledge) and /tickets (filter, open by hand, transitions, history)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.engine import Connection

from alerts import alerts as alert_store
from alerts import reports
from alerts import tickets as ticket_store
from alerts.health import DIMENSIONS, get_health, new_health
from alerts.rules import FAULTS
from api.deps import STAFF_ROLES, Principal, get_database, get_settings, not_found, require_roles
from core.settings import Settings
from store.db import Database
from store.tables.alerts import alerts, terminal_health, tickets

router = APIRouter(prefix="/api/v1", tags=["health, alerts and tickets"])

ANYONE = require_roles(*STAFF_ROLES, "customer")
NOC = require_roles("admin", "manager", "noc")
DESK = require_roles("admin", "manager", "noc", "clerk")
STAFF = require_roles(*STAFF_ROLES)
REPORTERS = require_roles("admin", "manager", "finance")
TICKET_FAULTS = (*FAULTS, ticket_store.MANUAL_FAULT)
# Who may move a ticket into each state (approval and dispatch are the manager's, rule 3).
TRANSITION_ROLES: dict[str, frozenset[str]] = {
    ticket_store.APPROVED: frozenset({"admin", "manager"}),
    ticket_store.DISPATCHED: frozenset({"admin", "manager"}),
    ticket_store.IN_PROGRESS: frozenset({"admin", "manager", "technician"}),
    ticket_store.RESOLVED: frozenset({"admin", "manager", "technician"}),
    ticket_store.CLOSED: frozenset({"admin", "manager", "noc", "clerk"}),
    ticket_store.CANCELLED: frozenset({"admin", "manager", "clerk"}),
}


class Acknowledge(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message reaches the clerk as written (no "Value error, ")."""
    return PydanticCustomError("value_error", message)


class NewTicket(BaseModel):
    terminal_id: str | None = Field(default=None, min_length=1, max_length=64)
    plate: str | None = Field(
        default=None, min_length=1, max_length=40, description="instead of terminal_id: the vehicle's plate"
    )
    fault: str | None = Field(default=None, max_length=40, description="a fault name, or none for 'reported'")
    symptoms: str | None = Field(default=None, max_length=4000)
    priority: str = Field(default="normal", pattern="^(urgent|high|normal|low)$")
    contact: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)

    @field_validator("fault")
    @classmethod
    def _known_fault(cls, fault: str | None) -> str | None:
        fault = (fault or "").strip() or None  # an empty choice is "reported"
        if fault is not None and fault not in TICKET_FAULTS:
            raise _invalid(f"unknown fault {fault!r}; faults: {', '.join(TICKET_FAULTS)}")
        return fault

    @model_validator(mode="after")
    def _one_subject(self) -> NewTicket:
        if (self.terminal_id is None) == (self.plate is None):
            raise _invalid("name the terminal (terminal_id) or the vehicle (plate), one of them")
        return self


class Transition(BaseModel):
    to: str = Field(description="open, approved, dispatched, in_progress, resolved, closed, cancelled")
    comment: str | None = Field(default=None, max_length=2000)


def _customer_terminals(conn: Connection, principal: Principal) -> set[str] | None:
    if principal.customer_scope is None:
        return None
    from fleet.scope import customer_terminal_ids

    return customer_terminal_ids(conn, principal.customer_scope)


def _stored_id(conn: Connection, terminal_id: str) -> str:
    """Health, alerts and tickets are kept under the registry's form of a device id."""
    from fleet.service import stored_device_id

    return stored_device_id(conn, terminal_id)


def _json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


# --------------------------------------------------------------------------- health


@router.get("/health", summary="Fleet health: online, offline, never seen, faulty, per fault")
def health_summary(
    principal: Principal = Depends(ANYONE), database: Database = Depends(get_database)
) -> dict[str, Any]:
    """Counted in the database: one GROUP BY over the dimensions; only terminals with a fault
    state in progress have their fault states read."""
    from store.tables.registry import terminals

    columns = [terminal_health.c[d] for d in DIMENSIONS]
    # a retired or scrapped terminal is out of the fleet: neither offline nor never seen
    out_of_service = select(terminals.c.device_id).where(
        or_(terminals.c.retired_at.is_not(None), terminals.c.status == "scrapped")
    )
    in_service = terminal_health.c.terminal_id.not_in(out_of_service)
    by_dimensions = select(*columns, func.count()).where(in_service).group_by(*columns)
    with_conditions = select(terminal_health.c.conditions).where(
        in_service,
        terminal_health.c.conditions.is_not(None),
        cast(terminal_health.c.conditions, Text) != "{}",
    )
    unseen = (
        select(func.count())
        .select_from(terminals)
        .where(
            terminals.c.status != "scrapped",
            terminals.c.retired_at.is_(None),
            ~select(terminal_health.c.terminal_id)
            .where(terminal_health.c.terminal_id == terminals.c.device_id)
            .exists(),
        )
    )
    with database.engine.connect() as conn:
        scope = _customer_terminals(conn, principal)
        if scope is not None:
            by_dimensions = by_dimensions.where(terminal_health.c.terminal_id.in_(scope))
            with_conditions = with_conditions.where(terminal_health.c.terminal_id.in_(scope))
            unseen = unseen.where(terminals.c.device_id.in_(scope))
        groups = conn.execute(by_dimensions).all()
        condition_sets = [r[0] for r in conn.execute(with_conditions)]
        never_seen = int(conn.execute(unseen).scalar_one())
    seen = sum(int(group[-1]) for group in groups)
    counts = {"terminals": seen + never_seen, "online": 0, "offline": 0, "never_seen": never_seen}
    dimensions: dict[str, dict[str, int]] = {d: {} for d in DIMENSIONS}
    for *values, count in groups:
        for dimension, value in zip(DIMENSIONS, values, strict=True):
            dimensions[dimension][value] = dimensions[dimension].get(value, 0) + int(count)
    for value, count in dimensions["connectivity"].items():
        counts[value] = counts.get(value, 0) + count
    per_fault = dict.fromkeys(FAULTS, 0)
    faulty = 0
    for conditions in condition_sets:
        raised = [fault for fault, state in (conditions or {}).items() if state.get("raised")]
        faulty += bool(raised)
        for fault in raised:
            per_fault[fault] = per_fault.get(fault, 0) + 1
    return {**counts, "faulty": faulty, "per_fault": per_fault, "dimensions": dimensions}


@router.get("/terminals/{terminal_id}/health", summary="One terminal's health with its open alerts")
def terminal_health_view(
    terminal_id: str, principal: Principal = Depends(ANYONE), database: Database = Depends(get_database)
) -> dict[str, Any]:
    from fleet.context import terminal_context

    now = datetime.now(UTC)
    with database.engine.connect() as conn:
        terminal_id = _stored_id(conn, terminal_id)
        if principal.customer_scope is not None:
            from fleet.scope import customer_owns_terminal

            if not customer_owns_terminal(conn, principal.customer_scope, terminal_id):
                raise not_found("terminal", terminal_id)
        health = get_health(conn, terminal_id)
        if health is None:
            if terminal_context(conn, terminal_id, now) is None:
                raise not_found("terminal", terminal_id)
            health = new_health(terminal_id, now)
        open_alerts = conn.execute(
            select(alerts).where(alerts.c.terminal_id == terminal_id, alerts.c.state != alert_store.CLEARED)
        ).mappings()
        return {**health.public(), "open_alerts": [_json(dict(a)) for a in open_alerts]}


# --------------------------------------------------------------------------- alerts


@router.get("/alerts", summary="Alerts, newest first; filter by state, fault, customer, terminal")
def list_alerts(
    state: str | None = Query(
        None, pattern="^(raised|acknowledged|cleared|open)$", description="open = not cleared"
    ),
    fault: str | None = None,
    customer_id: int | None = None,
    terminal_id: str | None = None,
    device_fault: bool | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    principal: Principal = Depends(ANYONE),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    query = select(alerts)
    if state == "open":
        query = query.where(alerts.c.state != alert_store.CLEARED)
    elif state:
        query = query.where(alerts.c.state == state)
    if fault and fault not in FAULTS:
        raise HTTPException(422, detail=f"unknown fault {fault!r}; faults: {', '.join(FAULTS)}")
    if fault:
        query = query.where(alerts.c.fault == fault)
    if terminal_id:
        with database.engine.connect() as conn:
            query = query.where(alerts.c.terminal_id == _stored_id(conn, terminal_id))
    if device_fault is not None:
        query = query.where(alerts.c.device_fault.is_(device_fault))
    scope = principal.customer_scope if principal.customer_scope is not None else customer_id
    if scope is not None:
        query = query.where(alerts.c.customer_id == scope)
    page = _page(database, query, alerts.c.id, limit, offset, _json)
    with database.engine.connect() as conn:
        _add_vehicle(conn, page["items"])
    return page


@router.get("/alerts/{alert_id}", summary="One alert")
def read_alert(
    alert_id: int, principal: Principal = Depends(ANYONE), database: Database = Depends(get_database)
) -> dict[str, Any]:
    with database.engine.connect() as conn:
        row = alert_store.get_alert(conn, alert_id)
        if row is None or not principal.can_see(row["customer_id"]):
            raise not_found("alert", alert_id)
        return _add_vehicle(conn, [_json(row)])[0]


def _add_vehicle(conn: Connection, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each alert with the plate and customer of the vehicle its terminal is in now, when that
    is still the alert's customer (a terminal moved on tells nobody where it went): the NOC
    calls about a vehicle, not a device id."""
    from store.tables.registry import customers, installations, terminals, vehicles

    rows = conn.execute(
        select(terminals.c.device_id, customers.c.id, vehicles.c.plate, customers.c.name)
        .select_from(installations.join(terminals).join(vehicles).join(customers))
        .where(
            installations.c.valid_to.is_(None),
            terminals.c.device_id.in_({item["terminal_id"] for item in items}),
        )
    )
    vehicle = {(device_id, owner): (plate, name) for device_id, owner, plate, name in rows}
    for item in items:
        item["plate"], item["customer_name"] = vehicle.get(
            (item["terminal_id"], item["customer_id"]), (None, None)
        )
    return items


@router.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge a raised alert, with a comment")
def acknowledge_alert(
    alert_id: int,
    body: Acknowledge,
    principal: Principal = Depends(NOC),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    with database.engine.begin() as conn:
        if alert_store.get_alert(conn, alert_id) is None:
            raise not_found("alert", alert_id)
        try:
            row = alert_store.acknowledge(
                conn, alert_id, principal.name or principal.role, body.comment, datetime.now(UTC)
            )
        except alert_store.AlertStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return _json(row)


# --------------------------------------------------------------------------- tickets

_TICKET_KEY = re.compile(r"(?:RSO-?)?0*(\d{1,12})", re.IGNORECASE)


def ticket_key(
    ticket_id: str = Path(description="the ticket's id (10) or its number as printed (RSO-000010)"),
) -> int:
    """The ticket id in a path: the bare id or the number a customer reads out on the phone."""
    match = _TICKET_KEY.fullmatch(ticket_id.strip())
    if match is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"a ticket is its id (10) or its number (RSO-000010), got {ticket_id!r}",
        )
    return int(match.group(1))


@router.get(
    "/tickets", summary="Repair tickets, newest first; filter by state, fault, customer, terminal, plate"
)
def list_tickets(
    state: str | None = Query(None, description="a state, or 'open' for every state before resolved"),
    fault: str | None = None,
    customer_id: int | None = None,
    terminal_id: str | None = None,
    plate: str | None = Query(
        None, description="the vehicle's plate or part of it; spaces, dashes, case ignored"
    ),
    priority: str | None = Query(None, pattern="^(urgent|high|normal|low)$"),
    source: str | None = Query(None, pattern="^(auto|manual)$"),
    to_verify: bool | None = Query(None, description="only tickets whose fault cleared before dispatch"),
    overdue: bool | None = Query(
        None, description="true: open tickets past their response or repair due time now; false: the others"
    ),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    principal: Principal = Depends(ANYONE),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    query = select(tickets)
    if state == "open":
        query = query.where(tickets.c.state.in_(ticket_store.OPEN_STATES))
    elif state:
        if state not in ticket_store.STATES:
            raise HTTPException(
                422,
                detail=f"unknown state {state!r}; states: {', '.join(ticket_store.STATES)} "
                "('open' lists every state before resolved)",
            )
        query = query.where(tickets.c.state == state)
    if fault and fault not in TICKET_FAULTS:
        raise HTTPException(422, detail=f"unknown fault {fault!r}; faults: {', '.join(TICKET_FAULTS)}")
    if plate:
        from fleet.validation import plate_search

        query = query.where(tickets.c.vehicle_plate.contains(plate_search(plate)))
    if terminal_id:
        with database.engine.connect() as conn:
            terminal_id = _stored_id(conn, terminal_id)
    for column, value in (
        ("fault", fault),
        ("terminal_id", terminal_id),
        ("priority", priority),
        ("source", source),
    ):
        if value:
            query = query.where(tickets.c[column] == value)
    if to_verify is not None:
        query = query.where(
            tickets.c.verification == ticket_store.CLEARED_TO_VERIFY
            if to_verify
            else tickets.c.verification.is_(None)
        )
    scope = principal.customer_scope if principal.customer_scope is not None else customer_id
    if scope is not None:
        query = query.where(tickets.c.customer_id == scope)
    now = datetime.now(UTC)
    if overdue is not None:
        late = ticket_store.overdue_now(now)
        query = query.where(late if overdue else ~late)
    return _page(database, query, tickets.c.id, limit, offset, lambda row: ticket_store.public(row, now))


@router.post("/tickets", status_code=201, summary="Open a repair ticket by hand (a customer's call)")
def open_ticket(
    body: NewTicket,
    principal: Principal = Depends(DESK),
    database: Database = Depends(get_database),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    now = datetime.now(UTC)
    try:
        with database.engine.begin() as conn:
            row = ticket_store.open_by_hand(
                conn,
                settings,
                terminal_id=body.terminal_id or _terminal_in(conn, body.plate or ""),
                actor=principal.name or principal.role,
                at=now,
                fault=body.fault,
                symptoms=body.symptoms,
                priority=body.priority,
                contact=body.contact,
                phone=body.phone,
            )
    except ticket_store.UnknownTerminal as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except ticket_store.TicketError as exc:  # already open, or the terminal is in no vehicle
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return ticket_store.public(row, now)


def _terminal_in(conn: Connection, plate: str) -> str:
    """The terminal a caller means by the plate of the vehicle it is in."""
    from fleet.errors import FleetError
    from fleet.service import terminals_in_vehicle

    try:
        device_ids = terminals_in_vehicle(conn, plate)
    except FleetError as exc:  # an unknown plate (404) or no plate at all (422)
        raise HTTPException(exc.status, detail=exc.message) from exc
    if not device_ids:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no terminal is installed in vehicle {plate}")
    if len(device_ids) > 1:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"vehicle {plate} holds terminals {', '.join(device_ids)}: name the terminal (terminal_id)",
        )
    return device_ids[0]


@router.get("/tickets/{ticket_id}", summary="One ticket with its history")
def read_ticket(
    ticket_id: int = Depends(ticket_key),
    principal: Principal = Depends(ANYONE),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    with database.engine.connect() as conn:
        row = ticket_store.get_ticket(conn, ticket_id)
        if row is None or not principal.can_see(row["customer_id"]):
            raise not_found("ticket", ticket_id)
        steps = ticket_store.history(conn, ticket_id)
    return {**ticket_store.public(row, datetime.now(UTC)), "history": [_json(s) for s in steps]}


@router.get("/tickets/{ticket_id}/history", summary="Every change of a ticket: who, when, from, to")
def ticket_history(
    ticket_id: int = Depends(ticket_key),
    principal: Principal = Depends(ANYONE),
    database: Database = Depends(get_database),
) -> list[dict[str, Any]]:
    with database.engine.connect() as conn:
        row = ticket_store.get_ticket(conn, ticket_id)
        if row is None or not principal.can_see(row["customer_id"]):
            raise not_found("ticket", ticket_id)
        return [_json(s) for s in ticket_store.history(conn, ticket_id)]


@router.post(
    "/tickets/{ticket_id}/transitions", summary="Move a ticket along its workflow (409 when illegal)"
)
def move_ticket(
    body: Transition,
    ticket_id: int = Depends(ticket_key),
    principal: Principal = Depends(STAFF),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    allowed_roles = TRANSITION_ROLES.get(body.to)
    if allowed_roles is not None and principal.role not in allowed_roles:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"role {principal.role!r} may not move a ticket to {body.to}; allowed: {', '.join(sorted(allowed_roles))}",
        )
    try:
        with database.engine.begin() as conn:
            row = ticket_store.transition(
                conn,
                ticket_id,
                body.to,
                actor=principal.name or principal.role,
                at=datetime.now(UTC),
                comment=body.comment,
            )
    except LookupError as exc:
        raise not_found("ticket", ticket_id) from exc
    except ticket_store.TicketError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    return ticket_store.public(row, datetime.now(UTC))


def _page(database: Database, query: Any, order: Any, limit: int, offset: int, shape: Any) -> dict[str, Any]:
    with database.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = conn.execute(query.order_by(order.desc()).limit(limit).offset(offset)).mappings()
        items = [shape(dict(r)) for r in rows]
    return {"total": total, "limit": limit, "offset": offset, "items": items}


# --------------------------------------------------------------------------- reports


@router.get(
    "/reports/tickets",
    summary="Monthly or quarterly ticket report: volumes, SLA met, response and repair hours, "
    "faults per terminal model (rules 12 and 13)",
)
def ticket_report(
    period: str | None = Query(
        None, description="a month (2026-11) or a quarter (2026-Q4); default: last month"
    ),
    tz: str = Query("UTC", description="the zone of the period's bounds, an IANA name such as Asia/Shanghai"),
    principal: Principal = Depends(REPORTERS),
    database: Database = Depends(get_database),
) -> dict[str, Any]:
    now = datetime.now(UTC)
    try:
        chosen = reports.parse_period(period, tz) if period else reports.last_month(now, tz)
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    with database.engine.connect() as conn:
        return reports.ticket_report(conn, chosen, now)
