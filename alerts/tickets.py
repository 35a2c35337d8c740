"""Repair tickets (the regulation's repair service order): opened by a device-fault alert or by
hand, with the registry's terminal, SIM, vehicle and customer, the warranty coverage of the
day, the fault's evidence, a priority and SLA due times; a small state machine with history.

"At most one open ticket per terminal and fault" is a partial unique index, so retransmitted
frames, spool replays and a second gateway process attach to the ticket that is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, desc, insert, or_, select, text, update
from sqlalchemy.engine import Connection

from alerts.sql import insert_unless_open
from alerts.symptoms import describe_fault
from core.settings import Settings, TicketSettings
from store.tables.alerts import OPEN_TICKET, ticket_history, tickets

OPEN, APPROVED, DISPATCHED, IN_PROGRESS = "open", "approved", "dispatched", "in_progress"
RESOLVED, CLOSED, CANCELLED = "resolved", "closed", "cancelled"
STATES = (OPEN, APPROVED, DISPATCHED, IN_PROGRESS, RESOLVED, CLOSED, CANCELLED)
OPEN_STATES = (OPEN, APPROVED, DISPATCHED, IN_PROGRESS)
BEFORE_DISPATCH = (OPEN, APPROVED)
PRIORITIES = ("urgent", "high", "normal", "low")
CLEARED_TO_VERIFY = "cleared_to_verify"
SYSTEM = "system"
TRANSITION = "transition"  # the history action of a workflow move
MANUAL_FAULT = "reported"  # a customer's call that names no known fault

TRANSITIONS: dict[str, tuple[str, ...]] = {
    OPEN: (APPROVED, CANCELLED),
    APPROVED: (DISPATCHED, CANCELLED),
    DISPATCHED: (IN_PROGRESS, CANCELLED),
    IN_PROGRESS: (RESOLVED, CANCELLED),
    RESOLVED: (CLOSED, IN_PROGRESS),  # back to work when the repair did not hold
    CLOSED: (),
    CANCELLED: (),
}


class TicketError(ValueError):
    """A ticket operation that conflicts with the ticket's state (the API answers 409)."""


class DuplicateTicket(TicketError):
    def __init__(self, existing_id: int, terminal_id: str, fault: str) -> None:
        super().__init__(
            f"ticket {ticket_number(existing_id)} is already open for terminal {terminal_id} and fault {fault}"
        )
        self.existing_id = existing_id


class UnknownTerminal(LookupError):
    pass


class NotInstalled(TicketError):
    """A ticket by hand for a terminal in no vehicle (in stock, returned for repair)."""


@dataclass(slots=True)
class TicketOutcome:
    ticket_id: int
    action: str  # created, attached, returned (fault back on a cleared ticket), reopened


def ticket_number(ticket_id: int) -> str:
    return f"RSO-{ticket_id:06d}"


def allowed_transitions(row: dict[str, Any]) -> tuple[str, ...]:
    allowed = TRANSITIONS[row["state"]]
    if row["state"] in BEFORE_DISPATCH and row.get("verification") == CLEARED_TO_VERIFY:
        allowed = (*allowed, CLOSED)  # verified remotely: nobody needs to go
    return allowed


def sla_due(settings: TicketSettings, priority: str, start: datetime) -> tuple[datetime, datetime]:
    return (
        start + timedelta(hours=settings.response_hours[priority]),
        start + timedelta(hours=settings.repair_hours[priority]),
    )


# --------------------------------------------------------------------------- registry facts


def registry_fields(
    conn: Connection, settings: Settings, terminal_id: str, at: datetime
) -> dict[str, Any] | None:
    """Terminal, SIM, vehicle, customer and warranty coverage of that day; None if unregistered."""
    from fleet.context import terminal_context
    from warranty.coverage import coverage

    context = terminal_context(conn, terminal_id, at)
    if context is None:
        return None
    cover = coverage(conn, context.device_id, at.date(), settings.warranty)
    return {
        "model_name": context.model_name,
        "purchased_on": context.purchased_on,
        "sim_iccid": context.iccid,
        "sim_msisdn": context.msisdn,
        "vehicle_plate": context.plate,
        "vehicle_vin": context.vin,
        "customer_id": context.customer_id,
        "customer_name": context.customer_name,
        "contact": context.customer_contact,
        "phone": context.customer_phone,
        "address": context.customer_address,
        "in_warranty": cover.in_warranty,
        "warranty_until": cover.until,
        "warranty_reason": cover.reason,
        "warranty_source": cover.source,
    }


def last_frames(conn: Connection, terminal_id: str, limit: int = 5) -> list[dict[str, Any]]:
    """The terminal's last stored frames (positions and events), newest first, raw as hex."""
    from store.tables.positions import events, positions

    rows: list[dict[str, Any]] = []
    for table, time_column, kind in (
        (positions, positions.c.fix_time, "position"),
        (events, events.c.time, None),
    ):
        query = (
            select(table)
            .where(table.c.terminal_id == terminal_id)
            .order_by(desc(table.c.received_at), desc(time_column))
            .limit(limit)
        )
        for row in conn.execute(query).mappings():
            rows.append(
                {
                    "type": kind or row["type"],
                    "time": row[time_column.name].isoformat(),
                    "received_at": row["received_at"].isoformat(),
                    "alarms": row["alarms"] or [],
                    "raw_hex": row["raw"].hex() if row["raw"] else None,
                }
            )
    rows.sort(key=lambda r: r["received_at"], reverse=True)
    return rows[:limit]


# --------------------------------------------------------------------------- automatic tickets


def open_for_alert(
    conn: Connection,
    settings: Settings,
    *,
    terminal_id: str,
    fault: str,
    priority: str,
    alert_id: int,
    first_seen: datetime,
    at: datetime,
    evidence: dict[str, Any],
) -> TicketOutcome | None:
    """Open the repair ticket for a device-fault alert, or attach to the one already open, or
    reopen the last one when the fault returns within ``reopen_window_h``.  None when the
    terminal is not in the registry (a ticket must name a customer and a vehicle)."""
    existing = _open_ticket(conn, terminal_id, fault)
    if existing is not None:
        return _attach(conn, existing, alert_id, at)
    reopened = _reopen_recent(conn, settings.tickets, terminal_id, fault, alert_id, at)
    if reopened is not None:
        return reopened
    facts = registry_fields(conn, settings, terminal_id, at)
    if facts is None:
        return None
    response_due, repair_due = sla_due(settings.tickets, priority, at)
    evidence = {**evidence, "alert_id": alert_id, "last_frames": last_frames(conn, terminal_id)}
    new_id = insert_unless_open(
        conn,
        tickets,
        {
            "source": "auto",
            "state": OPEN,
            "terminal_id": terminal_id,
            "fault": fault,
            "symptoms": describe_fault(fault, evidence),
            "priority": priority,
            "alert_id": alert_id,
            **facts,
            "first_seen": first_seen,
            "last_seen": at,
            "occurrences": 1,
            "evidence": evidence,
            "created_at": at,
            "created_by": SYSTEM,
            "updated_at": at,
            "response_due": response_due,
            "repair_due": repair_due,
        },
        ["terminal_id", "fault"],
        text(OPEN_TICKET),
    )
    if new_id is None:  # another process opened it a moment ago
        existing = _open_ticket(conn, terminal_id, fault)
        return _attach(conn, existing, alert_id, at) if existing else None
    _record(conn, new_id, at, SYSTEM, "created", None, OPEN, f"alert {alert_id}: {fault}")
    return TicketOutcome(new_id, "created")


def _open_ticket(conn: Connection, terminal_id: str, fault: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(tickets).where(
                tickets.c.terminal_id == terminal_id,
                tickets.c.fault == fault,
                tickets.c.state.in_(OPEN_STATES),
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def _attach(conn: Connection, row: dict[str, Any], alert_id: int, at: datetime) -> TicketOutcome:
    """The same fault again on an open ticket: one more occurrence, never a second ticket."""
    returned = row["verification"] == CLEARED_TO_VERIFY
    if row["alert_id"] == alert_id and not returned:
        return TicketOutcome(row["id"], "attached")  # the same alert again: a retransmission
    values: dict[str, Any] = {
        "alert_id": alert_id,
        "updated_at": at,
        "occurrences": tickets.c.occurrences + 1,
    }
    if row["last_seen"] is None or at > row["last_seen"]:
        values["last_seen"] = at
    if returned:
        values.update(verification=None, fault_cleared_at=None)
    conn.execute(update(tickets).where(tickets.c.id == row["id"]).values(**values))
    if returned:
        _record(
            conn, row["id"], at, SYSTEM, "fault_returned", row["state"], row["state"], f"alert {alert_id}"
        )
        return TicketOutcome(row["id"], "returned")
    return TicketOutcome(row["id"], "attached")


def _reopen_recent(
    conn: Connection, settings: TicketSettings, terminal_id: str, fault: str, alert_id: int, at: datetime
) -> TicketOutcome | None:
    row = (
        conn.execute(
            select(tickets)
            .where(
                tickets.c.terminal_id == terminal_id,
                tickets.c.fault == fault,
                tickets.c.state.in_((RESOLVED, CLOSED)),
            )
            .order_by(desc(tickets.c.updated_at))
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    ended = row["fault_cleared_at"] or row["resolved_at"] or row["closed_at"]
    if ended is None or at - ended > timedelta(hours=settings.reopen_window_h):
        return None
    result = conn.execute(
        update(tickets)
        .where(tickets.c.id == row["id"], tickets.c.state == row["state"])
        .values(
            state=OPEN,
            verification=None,
            fault_cleared_at=None,
            alert_id=alert_id,
            last_seen=at,
            occurrences=tickets.c.occurrences + 1,
            reopened=tickets.c.reopened + 1,
            updated_at=at,
            closed_at=None,
            resolved_at=None,
        )
    )
    if result.rowcount != 1:
        return None
    _record(
        conn,
        row["id"],
        at,
        SYSTEM,
        "reopened",
        row["state"],
        OPEN,
        f"fault {fault} back within {settings.reopen_window_h:g} h (alert {alert_id})",
    )
    return TicketOutcome(row["id"], "reopened")


def fault_cleared(conn: Connection, terminal_id: str, fault: str, at: datetime) -> int | None:
    """The fault went away.  Before anyone is dispatched the ticket is marked "cleared, to
    verify" (never deleted); afterwards the technician's work goes on and history says so."""
    row = _open_ticket(conn, terminal_id, fault)
    if row is None:
        return None
    if row["state"] in BEFORE_DISPATCH:
        conn.execute(
            update(tickets)
            .where(tickets.c.id == row["id"])
            .values(verification=CLEARED_TO_VERIFY, fault_cleared_at=at, updated_at=at)
        )
        comment = "fault cleared before dispatch: to verify"
    else:
        conn.execute(
            update(tickets).where(tickets.c.id == row["id"]).values(fault_cleared_at=at, updated_at=at)
        )
        comment = "fault cleared while a technician is on it"
    _record(conn, row["id"], at, SYSTEM, "fault_cleared", row["state"], row["state"], comment)
    return int(row["id"])


# --------------------------------------------------------------------------- by hand and workflow


def open_by_hand(
    conn: Connection,
    settings: Settings,
    *,
    terminal_id: str,
    actor: str,
    at: datetime,
    fault: str | None = None,
    symptoms: str | None = None,
    priority: str = "normal",
    contact: str | None = None,
    phone: str | None = None,
) -> dict[str, Any]:
    """A ticket from a customer's call: the same fields as an automatic one."""
    from fleet.service import stored_device_id

    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
    fault = fault or MANUAL_FAULT
    terminal_id = stored_device_id(conn, terminal_id)  # one open ticket per terminal, however typed
    facts = registry_fields(conn, settings, terminal_id, at)
    if facts is None:
        raise UnknownTerminal(f"terminal {terminal_id} is not in the registry")
    if facts["vehicle_plate"] is None:
        raise NotInstalled(
            f"terminal {terminal_id} is in no vehicle now: a repair ticket is for a terminal in a "
            "customer's vehicle; name the vehicle's plate to find the terminal it holds"
        )
    if contact:
        facts["contact"] = contact
    if phone:
        facts["phone"] = phone
    response_due, repair_due = sla_due(settings.tickets, priority, at)
    new_id = insert_unless_open(
        conn,
        tickets,
        {
            "source": "manual",
            "state": OPEN,
            "terminal_id": terminal_id,
            "fault": fault,
            "symptoms": symptoms,
            "priority": priority,
            **facts,
            "first_seen": at,
            "last_seen": at,
            "occurrences": 1,
            "evidence": {"last_frames": last_frames(conn, terminal_id)},
            "created_at": at,
            "created_by": actor,
            "updated_at": at,
            "response_due": response_due,
            "repair_due": repair_due,
        },
        ["terminal_id", "fault"],
        text(OPEN_TICKET),
    )
    if new_id is None:
        existing = _open_ticket(conn, terminal_id, fault)
        raise DuplicateTicket(existing["id"] if existing else 0, terminal_id, fault)
    _record(conn, new_id, at, actor, "created", None, OPEN, symptoms)
    return get_ticket(conn, new_id) or {}


def transition(
    conn: Connection, ticket_id: int, to_state: str, *, actor: str, at: datetime, comment: str | None = None
) -> dict[str, Any]:
    """Move a ticket along its workflow; an illegal move raises ``TicketError`` saying which are legal."""
    row = get_ticket(conn, ticket_id)
    if row is None:
        raise LookupError(f"ticket {ticket_number(ticket_id)} not found")
    if to_state not in STATES:
        raise ValueError(f"unknown ticket state {to_state!r}; states: {', '.join(STATES)}")
    allowed = allowed_transitions(row)
    if to_state not in allowed:
        raise TicketError(
            f"ticket {ticket_number(ticket_id)} cannot go from {row['state']} to {to_state}; "
            + (f"allowed: {', '.join(allowed)}" if allowed else f"{row['state']} is final")
        )
    values: dict[str, Any] = {"state": to_state, "updated_at": at}
    if to_state in (APPROVED, DISPATCHED) and row["responded_at"] is None:
        values["responded_at"] = at
    if to_state == RESOLVED:
        values["resolved_at"] = at
    if row["state"] == RESOLVED and to_state == IN_PROGRESS:  # the repair did not hold
        values.update(resolved_at=None, reopened=tickets.c.reopened + 1)
    if to_state in (CLOSED, CANCELLED):
        values["closed_at"] = at
    result = conn.execute(
        update(tickets).where(tickets.c.id == ticket_id, tickets.c.state == row["state"]).values(**values)
    )
    if result.rowcount != 1:
        raise TicketError(f"ticket {ticket_number(ticket_id)} changed meanwhile; reload and try again")
    _record(conn, ticket_id, at, actor, TRANSITION, row["state"], to_state, comment)
    return get_ticket(conn, ticket_id) or {}


def _record(
    conn: Connection,
    ticket_id: int,
    at: datetime,
    actor: str,
    action: str,
    from_state: str | None,
    to_state: str | None,
    comment: str | None,
) -> None:
    conn.execute(
        insert(ticket_history).values(
            ticket_id=ticket_id,
            at=at,
            actor=actor,
            action=action,
            from_state=from_state,
            to_state=to_state,
            comment=comment,
        )
    )


def get_ticket(conn: Connection, ticket_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(tickets).where(tickets.c.id == ticket_id)).mappings().first()
    return dict(row) if row else None


def history(conn: Connection, ticket_id: int) -> list[dict[str, Any]]:
    query = (
        select(ticket_history).where(ticket_history.c.ticket_id == ticket_id).order_by(ticket_history.c.id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def public(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A ticket as the API shows it: its number, allowed moves and where it stands on SLA."""
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    out["number"] = ticket_number(row["id"])
    out["allowed_transitions"] = list(allowed_transitions(row))
    responded, repaired = responded_at(row), repaired_at(row)
    cancelled = row["state"] == CANCELLED  # no SLA runs on a cancelled ticket
    out["response_overdue"] = not cancelled and (responded or now) > row["response_due"]
    out["repair_overdue"] = not cancelled and (repaired or now) > row["repair_due"]
    out["response_minutes"] = _minutes(row["created_at"], responded)
    out["repair_minutes"] = _minutes(row["created_at"], repaired)
    return out


def overdue_now(now: datetime) -> ColumnElement[bool]:
    """An open ticket that ``public`` flags overdue: answered late or unanswered past its
    response due time, or past its repair due time."""
    return and_(
        tickets.c.state.in_(OPEN_STATES),
        or_(
            # spelled out, not coalesced: NOT of a NULL comparison would hide a ticket from both lists
            and_(tickets.c.responded_at.is_not(None), tickets.c.responded_at > tickets.c.response_due),
            and_(tickets.c.responded_at.is_(None), tickets.c.response_due < now),
            tickets.c.repair_due < now,
        ),
    )


def responded_at(row: dict[str, Any]) -> datetime | None:
    """When the ticket was first approved or dispatched, or else finished: a fault verified
    as cleared from the desk is closed with nobody sent.  None for a cancelled ticket that
    nobody answered."""
    if row["responded_at"] is not None:
        return row["responded_at"]  # type: ignore[no-any-return]
    if row["state"] == CANCELLED:
        return None
    known = [m for m in (row["resolved_at"], row["closed_at"]) if m is not None]
    return min(known) if known else None


def repaired_at(row: dict[str, Any]) -> datetime | None:
    """When the ticket was resolved, or else closed (never for a cancelled one)."""
    if row["state"] == CANCELLED:
        return None
    return row["resolved_at"] or row["closed_at"]  # type: ignore[no-any-return]


def _minutes(start: datetime, end: datetime | None) -> float | None:
    return round((end - start).total_seconds() / 60.0, 1) if end else None
