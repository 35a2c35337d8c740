"""Is a terminal in warranty on a given day, until when, and why.

The base period runs ``warranty_months`` from the installation date or the purchase date
(the model says which, else ``settings.count_from``).  Extended contracts add periods; a
void stops all cover from its day on.  A replacement terminal (one that came in by a
terminal swap) follows ``settings.replacement_rule``: ``remainder`` keeps the cover the
replaced terminal had, ``fresh`` starts a new base period at the swap.

``until`` is the last covered day, inclusive: a 12-month warranty from 2025-03-15 covers
2026-03-14 and not 2026-03-15.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from core.settings import WarrantySettings
from fleet.service import terminal_by_device_id, warranty_contracts_of
from store.tables.registry import installations, terminal_models, terminals


@dataclass(frozen=True, slots=True)
class Coverage:
    in_warranty: bool
    until: date | None  # last covered day (inclusive); None when cover has not started
    reason: str
    source: str  # base | replacement | extended | not_started | expired | void | none
    starts_on: date | None = None


@dataclass(frozen=True, slots=True)
class _Period:
    start: date
    end: date  # inclusive
    source: str
    description: str


def add_months(start: date, months: int) -> date:
    """The same day ``months`` later, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def coverage(conn: Connection, device_id: str, on: date, settings: WarrantySettings) -> Coverage:
    """Coverage of the terminal on day ``on`` (raises ``fleet.errors.NotFound`` if unknown)."""
    terminal = terminal_by_device_id(conn, device_id)
    voided_on: date | None = terminal["warranty_voided_on"]
    if voided_on is not None and on >= voided_on:
        return Coverage(
            False,
            voided_on - timedelta(days=1),
            f"out of warranty: void since {voided_on} ({terminal['warranty_void_reason']})",
            "void",
        )
    base = _base_period(conn, terminal, settings, depth=0)
    if base is None:
        return Coverage(
            True,
            None,
            "in warranty: the warranty starts at installation and the terminal is not installed yet",
            "not_started",
        )
    periods = [base] + [
        _Period(c["starts_on"], c["ends_on"], "extended", f"extended contract {c['reference'] or c['id']}")
        for c in warranty_contracts_of(conn, terminal["id"])
        if c["voided_at"] is None
    ]
    if voided_on is not None:
        periods = [
            _Period(p.start, min(p.end, voided_on - timedelta(days=1)), p.source, p.description)
            for p in periods
            if p.start < voided_on
        ]
    covering = [p for p in periods if p.start <= on <= p.end]
    if covering:
        until = _end_of_continuous_cover(periods, on)
        first = covering[0]
        return Coverage(
            True, until, f"in warranty until {until}: {first.description}", first.source, first.start
        )
    ended = [p for p in periods if p.end < on]
    if ended:
        last = max(ended, key=lambda p: p.end)
        return Coverage(False, last.end, f"out of warranty: ended {last.end} ({last.description})", "expired")
    return Coverage(False, None, f"out of warranty: cover starts {base.start}", "none", base.start)


def _end_of_continuous_cover(periods: list[_Period], on: date) -> date:
    """The last day of cover reached from ``on`` without a gap, across overlapping periods."""
    until = on
    extended = True
    while extended:
        extended = False
        for period in periods:
            if period.start <= until + timedelta(days=1) and period.end > until:
                until = period.end
                extended = True
    return until


def _base_period(
    conn: Connection, terminal: dict[str, Any], settings: WarrantySettings, depth: int
) -> _Period | None:
    model = conn.execute(select(terminal_models).where(terminal_models.c.id == terminal["model_id"])).one()
    months = model.warranty_months if model.warranty_months is not None else settings.default_months
    original_id = terminal["replaces_terminal_id"]
    if original_id is not None and settings.replacement_rule == "remainder" and depth < 50:
        original = dict(conn.execute(select(terminals).where(terminals.c.id == original_id)).one()._mapping)
        original_base = _base_period(conn, original, settings, depth + 1)
        if original_base is not None:
            swapped_on = _first_installed_on(conn, terminal["id"]) or original_base.start
            ends = [original_base.end] + [
                c["ends_on"] for c in warranty_contracts_of(conn, original_id) if c["voided_at"] is None
            ]
            return _Period(
                swapped_on,
                max(ends),
                "replacement",
                f"replacement for terminal {original['device_id']}, the remainder of its warranty",
            )
    count_from = model.warranty_from or settings.count_from
    start: date | None
    if count_from == "purchase":
        start = (
            terminal["purchased_on"] or terminal["delivered_on"] or _first_installed_on(conn, terminal["id"])
        )
        what = "purchase"
    else:
        start = _first_installed_on(conn, terminal["id"])
        what = "installation"
    if start is None:
        return None
    if original_id is not None:
        what = f"{what} (a fresh period for the replacement)"
    return _Period(
        start,
        add_months(start, months) - timedelta(days=1),
        "base",
        f"{months} months from {what} on {start}",
    )


def _first_installed_on(conn: Connection, terminal_id: int) -> date | None:
    first = conn.execute(
        select(installations.c.valid_from)
        .where(installations.c.terminal_id == terminal_id)
        .order_by(installations.c.valid_from)
        .limit(1)
    ).scalar()
    return first.date() if first is not None else None
