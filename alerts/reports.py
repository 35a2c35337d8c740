"""The monthly and quarterly ticket report (regulation rules 12 and 13): how many repair
tickets a period brought, how many met their SLA, how long response and repair took,
and which terminal models and faults they came from.

A ticket belongs to the period it was opened in; ``resolved`` and ``closed`` count what
was finished in the period, whenever it was opened, and ``open_at_end`` what was open at
its end: these three are read from the tickets' history, so a ticket resolved in October
and back in work in November stays resolved in October's report.  A ticket has been *responded to*
when it was first approved or dispatched, or else finished (a fault verified as cleared
from the desk needs nobody sent); it has been *repaired* when it was resolved, or else
closed.  Against its due times a ticket is ``met``, ``missed`` (late, or due and still not
done) or ``pending`` (not done, not yet due); cancelled tickets are left out of the SLA.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import and_, distinct, func, or_, select
from sqlalchemy.engine import Connection

from alerts.tickets import (
    CANCELLED,
    CLOSED,
    OPEN_STATES,
    PRIORITIES,
    RESOLVED,
    TRANSITION,
    repaired_at,
    responded_at,
)
from store.tables.alerts import ticket_history, tickets
from store.tables.registry import terminal_models, terminals

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    start: datetime  # aware, inclusive
    end: datetime  # aware, exclusive
    tz: str


def parse_period(text: str, tz: str = "UTC") -> Period:
    """``2026-11`` (a month) or ``2026-Q4`` (a quarter), in the zone ``tz``; ValueError
    says what is accepted."""
    tz = zone_name(tz)
    zone = ZoneInfo(tz)
    text = text.strip()
    if match := _MONTH.match(text):
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise ValueError(f"month {month} of {text!r} is not 01–12")
        first, months, label = month, 1, f"{year}-{month:02d}"
    elif match := _QUARTER.match(text):
        year, quarter = int(match[1]), int(match[2])
        first, months, label = 3 * quarter - 2, 3, f"{year}-Q{quarter}"
    else:
        raise ValueError(f"period {text!r} is neither a month (2026-11) nor a quarter (2026-Q4)")
    if not 1970 <= year <= 9998:
        raise ValueError(f"year {year} is out of range")
    start = datetime(year, first, 1, tzinfo=zone)
    after = first + months
    end = datetime(year + (after - 1) // 12, (after - 1) % 12 + 1, 1, tzinfo=zone)
    return Period(label, start, end, tz)


def ticket_report(conn: Connection, period: Period, now: datetime) -> dict[str, Any]:
    """The report of ``period`` as of ``now`` (what is not due by ``now`` is pending)."""
    opened = [
        dict(row)
        for row in conn.execute(
            select(tickets).where(tickets.c.created_at >= period.start, tickets.c.created_at < period.end)
        ).mappings()
    ]
    counted = [t for t in opened if t["state"] != CANCELLED]
    responses = [responded_at(t) for t in counted]
    repairs = [repaired_at(t) for t in counted]
    return {
        "period": {
            "label": period.label,
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "tz": period.tz,
        },
        "generated_at": now.isoformat(),
        "tickets": {
            "opened": len(opened),
            "by_source": _counts(t["source"] for t in opened),
            "by_priority": {p: n for p in PRIORITIES if (n := sum(t["priority"] == p for t in opened))},
            "by_fault": _counts(t["fault"] for t in opened),
            "reopened": sum(1 for t in opened if t["reopened"]),
            "cancelled": sum(1 for t in opened if t["state"] == CANCELLED),
            "resolved_in_period": _finished_in(conn, RESOLVED, period),
            "closed_in_period": _finished_in(conn, CLOSED, period),
            "open_at_end": _open_at(conn, period.end),
        },
        "sla": {
            "response": _sla(counted, responses, "response_due", now),
            "repair": _sla(counted, repairs, "repair_due", now),
        },
        "hours": {
            "response": _spread(
                _hours(t["created_at"], done) for t, done in zip(counted, responses, strict=True)
            ),
            "repair": _spread(
                _hours(t["created_at"], done) for t, done in zip(counted, repairs, strict=True)
            ),
        },
        "by_model": _by_model(conn, opened),
        "warranty": {
            "in": sum(1 for t in opened if t["in_warranty"] is True),
            "out": sum(1 for t in opened if t["in_warranty"] is False),
            "unknown": sum(1 for t in opened if t["in_warranty"] is None),
        },
    }


def _sla(
    rows: list[dict[str, Any]], done: list[datetime | None], due_column: str, now: datetime
) -> dict[str, Any]:
    met = missed = pending = 0
    for row, finished in zip(rows, done, strict=True):
        due = row[due_column]
        if finished is not None:
            met, missed = (met + 1, missed) if finished <= due else (met, missed + 1)
        elif now > due:
            missed += 1
        else:
            pending += 1
    decided = met + missed
    return {
        "met": met,
        "missed": missed,
        "pending": pending,
        "met_percent": round(100.0 * met / decided, 1) if decided else None,
    }


def _hours(start: datetime, end: datetime | None) -> float | None:
    return (end - start).total_seconds() / 3600.0 if end is not None else None


def _spread(values: Any) -> dict[str, Any]:
    """Count, mean, median and 90th percentile (nearest rank) of the known values, hours."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return {"count": 0, "mean": None, "median": None, "p90": None}

    def rank(q: float) -> float:
        return round(known[max(0, math.ceil(q * len(known)) - 1)], 2)

    return {
        "count": len(known),
        "mean": round(sum(known) / len(known), 2),
        "median": rank(0.5),
        "p90": rank(0.9),
    }


def _counts(values: Any) -> dict[str, int]:
    return dict(Counter(values).most_common())


def _finished_in(conn: Connection, state: str, period: Period) -> int:
    """Tickets moved to ``state`` in the period, from their history: a ticket resolved in
    October and sent back to work in November stays resolved in October's report."""
    query = select(func.count(distinct(ticket_history.c.ticket_id))).where(
        ticket_history.c.action == TRANSITION,
        ticket_history.c.to_state == state,
        ticket_history.c.at >= period.start,
        ticket_history.c.at < period.end,
    )
    return int(conn.execute(query).scalar_one())


def _open_at(conn: Connection, moment: datetime) -> int:
    """Tickets whose last change before ``moment`` left them in an open state."""
    step, later = ticket_history.alias("step"), ticket_history.alias("later")
    superseded = (
        select(later.c.id)
        .where(
            later.c.ticket_id == step.c.ticket_id,
            later.c.at < moment,
            or_(later.c.at > step.c.at, and_(later.c.at == step.c.at, later.c.id > step.c.id)),
        )
        .exists()
    )
    query = (
        select(func.count())
        .select_from(step)
        .where(step.c.at < moment, step.c.to_state.in_(OPEN_STATES), ~superseded)
    )
    return int(conn.execute(query).scalar_one())


def _by_model(conn: Connection, opened: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tickets per terminal model, their faults, and how many terminals of the model are
    registered (faults per terminal model, rule 13)."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for ticket in opened:
        by_model.setdefault(ticket["model_name"] or "(unknown)", []).append(ticket)
    registered: dict[str, int] = dict(
        conn.execute(
            select(terminal_models.c.name, func.count(terminals.c.id))
            .select_from(terminal_models.join(terminals, terminals.c.model_id == terminal_models.c.id))
            .where(terminals.c.status != "scrapped", terminals.c.retired_at.is_(None))
            .group_by(terminal_models.c.name)
        ).all()
    )
    out = []
    for model, rows in sorted(by_model.items(), key=lambda item: (-len(item[1]), item[0])):
        count = registered.get(model)
        out.append(
            {
                "model": model,
                "tickets": len(rows),
                "terminals": count,
                "tickets_per_100_terminals": round(100.0 * len(rows) / count, 1) if count else None,
                "faults": _counts(t["fault"] for t in rows),
            }
        )
    return out


def last_month(now: datetime, tz: str = "UTC") -> Period:
    """The month before ``now``'s in ``tz``: the report a manager asks for first."""
    local = now.astimezone(_zone(tz))
    previous = local.replace(day=1) - timedelta(days=1)
    return parse_period(f"{previous.year}-{previous.month:02d}", tz)


def zone_name(tz: str) -> str:
    """The IANA name ``tz`` means, whatever its case (``asia/shanghai``); ValueError if none."""
    name = _zone_names().get(tz.strip().lower())
    if name is None:
        raise ValueError(f"unknown time zone {tz!r}; use an IANA name such as Asia/Shanghai")
    return name


@cache
def _zone_names() -> dict[str, str]:
    # "localtime" is the server's own setting, not a zone a report can name
    return {name.lower(): name for name in available_timezones() if name != "localtime"}


def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(zone_name(tz))
