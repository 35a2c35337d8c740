"""Fault alerts: raised → acknowledged → cleared, one open alert per terminal and fault.

The database enforces "one open alert": a partial unique index on (terminal_id, fault) over
alerts not yet cleared, so two gateway processes raising the same fault get one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.engine import Connection

from alerts.rules import Rule
from alerts.sql import insert_unless_open
from alerts.symptoms import utc_text
from store.tables.alerts import OPEN_ALERT, alerts

RAISED, ACKNOWLEDGED, CLEARED = "raised", "acknowledged", "cleared"
STATES = (RAISED, ACKNOWLEDGED, CLEARED)


class AlertStateError(ValueError):
    """An acknowledgement the alert's state does not allow (the API answers 409)."""


@dataclass(slots=True)
class RaiseOutcome:
    alert_id: int
    created: bool  # False: an open alert existed (this process's or another's)


def raise_alert(
    conn: Connection,
    terminal_id: str,
    rule: Rule,
    at: datetime,
    *,
    first_seen: datetime,
    evidence: dict[str, Any],
    customer_id: int | None,
    device_fault: bool,
) -> RaiseOutcome:
    """Open the alert, or when one is open already count one more occurrence on it."""
    new_id = insert_unless_open(
        conn,
        alerts,
        {
            "terminal_id": terminal_id,
            "fault": rule.fault,
            "severity": rule.severity,
            "device_fault": device_fault,
            "state": RAISED,
            "customer_id": customer_id,
            "first_seen": first_seen,
            "last_seen": at,
            "occurrences": 1,
            "raised_at": at,
            "evidence": evidence,
        },
        ["terminal_id", "fault"],
        text(OPEN_ALERT),
    )
    if new_id is not None:
        return RaiseOutcome(new_id, True)
    existing = recur_alert(conn, terminal_id, rule.fault, at, evidence)
    if existing is None:  # cleared between our insert and update: very unlikely; try once more
        return raise_alert(
            conn,
            terminal_id,
            rule,
            at,
            first_seen=first_seen,
            evidence=evidence,
            customer_id=customer_id,
            device_fault=device_fault,
        )
    return RaiseOutcome(existing, False)


def open_alert_id(conn: Connection, terminal_id: str, fault: str) -> int | None:
    row = conn.execute(
        select(alerts.c.id).where(
            alerts.c.terminal_id == terminal_id, alerts.c.fault == fault, alerts.c.state != CLEARED
        )
    ).first()
    return int(row[0]) if row else None


def recur_alert(
    conn: Connection, terminal_id: str, fault: str, at: datetime, evidence: dict[str, Any] | None = None
) -> int | None:
    """One more occurrence of an open alert; returns its id (None: none open)."""
    values: dict[str, Any] = {"occurrences": alerts.c.occurrences + 1}
    if evidence:
        values["evidence"] = evidence
    return _update_open(conn, terminal_id, fault, at, values)


def touch_alert(conn: Connection, terminal_id: str, fault: str, at: datetime) -> int | None:
    """The fault is still there: the open alert's last seen moves on."""
    return _update_open(conn, terminal_id, fault, at, {})


def _update_open(
    conn: Connection, terminal_id: str, fault: str, at: datetime, values: dict[str, Any]
) -> int | None:
    alert_id = open_alert_id(conn, terminal_id, fault)
    if alert_id is None:
        return None
    conn.execute(update(alerts).where(alerts.c.id == alert_id, alerts.c.last_seen < at).values(last_seen=at))
    if values:
        conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))
    return alert_id


def clear_alert(conn: Connection, terminal_id: str, fault: str, at: datetime) -> int | None:
    """Clear the open alert of this fault; returns its id (None: none was open)."""
    alert_id = open_alert_id(conn, terminal_id, fault)
    if alert_id is None:
        return None
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(state=CLEARED, cleared_at=at))
    return alert_id


def acknowledge(
    conn: Connection, alert_id: int, who: str, comment: str | None, at: datetime
) -> dict[str, Any]:
    """raised → acknowledged, recording who and with what comment."""
    row = get_alert(conn, alert_id)
    if row is None:
        raise LookupError(f"alert {alert_id} not found")
    if row["state"] != RAISED:
        raise AlertStateError(
            f"alert {alert_id} is {row['state']}: only a raised alert can be acknowledged"
            + (
                f" (acknowledged by {row['acknowledged_by']} at {utc_text(row['acknowledged_at'])})"
                if row["acknowledged_by"]
                else ""
            )
        )
    conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id)
        .values(state=ACKNOWLEDGED, acknowledged_at=at, acknowledged_by=who, ack_comment=comment)
    )
    return dict(get_alert(conn, alert_id) or {})


def link_ticket(conn: Connection, alert_id: int, ticket_id: int) -> None:
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(ticket_id=ticket_id))


def get_alert(conn: Connection, alert_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().first()
    return dict(row) if row else None
