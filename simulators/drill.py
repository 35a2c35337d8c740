"""The fault drill's verdict: what each injected fault should have raised, and what did.

``expectations(plans, ticket_for)`` lists, per terminal, the alert its fault must raise
(``EXPECTED_ALERT``), whether that alert opens a repair ticket, and the warranty coverage
the ticket must carry; healthy terminals expect nothing.  ``evaluate`` compares that with
the alerts and tickets found afterwards (plain dicts with ``terminal_id``, ``fault``,
``in_warranty``) and ``format_table`` prints the result as a table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulators.faults import FaultKind
from simulators.scenario import TerminalPlan

# The alert (fault name, as the alert engine names it) each injected fault must raise.
EXPECTED_ALERT: dict[FaultKind, str | None] = {
    FaultKind.GNSS_ANTENNA_CUT: "gnss_antenna_cut",
    FaultKind.NO_FIX: "no_fix",
    FaultKind.FROZEN_FIX: "frozen_fix",
    FaultKind.POWER_CUT: "power_cut",
    FaultKind.LOW_BATTERY: "backup_battery_low",
    FaultKind.WEAK_SIGNAL: "weak_gsm",
    FaultKind.SIM_SWAP: "sim_mismatch",
    FaultKind.SILENT: "offline",
    FaultKind.CLOCK_DRIFT: "clock_drift",
    FaultKind.BAD_CHECKSUM: "data_errors",
    FaultKind.GARBAGE: "data_errors",
    FaultKind.TRUNCATED: "data_errors",
    FaultKind.DUPLICATE: None,  # a retransmission is stored once and raises nothing
}


@dataclass(frozen=True, slots=True)
class Expectation:
    terminal_id: str
    protocol: str
    group: str
    injected: str  # the fault kind injected, "" for a healthy terminal
    alert: str | None  # the alert that must be raised (None: none at all)
    ticket: bool  # whether that alert must open a repair ticket
    in_warranty: bool  # the coverage the ticket must carry


@dataclass(slots=True)
class Outcome:
    expectation: Expectation
    alerts: list[str]  # faults of the alerts found for this terminal
    tickets: list[tuple[str, bool | None]]  # (fault, in_warranty) of its tickets
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class DrillReport:
    outcomes: list[Outcome]

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]


def expectations(plans: Iterable[TerminalPlan], ticket_for: Callable[[str], bool]) -> list[Expectation]:
    """What the drill expects of each terminal; ``ticket_for(fault)`` says whether the
    alert engine opens a ticket for an alert of that fault (its rule settings)."""
    out: list[Expectation] = []
    for plan in plans:
        in_warranty = plan.group.warranty == "active"
        expected = [entry for entry in plan.faults if entry.expect]
        if not expected:
            out.append(
                Expectation(
                    plan.terminal_id, plan.group.protocol, plan.group.name, "", None, False, in_warranty
                )
            )
            continue
        for entry in expected:
            alert = EXPECTED_ALERT[entry.spec.kind]
            out.append(
                Expectation(
                    plan.terminal_id,
                    plan.group.protocol,
                    plan.group.name,
                    entry.spec.kind.value,
                    alert,
                    alert is not None and ticket_for(alert),
                    in_warranty,
                )
            )
    return out


def evaluate(
    expected: list[Expectation], alerts: Iterable[Mapping[str, Any]], tickets: Iterable[Mapping[str, Any]]
) -> DrillReport:
    alerts_by: dict[str, list[str]] = {}
    for alert in alerts:
        alerts_by.setdefault(str(alert["terminal_id"]), []).append(str(alert["fault"]))
    tickets_by: dict[str, list[tuple[str, bool | None]]] = {}
    for ticket in tickets:
        tickets_by.setdefault(str(ticket["terminal_id"]), []).append(
            (str(ticket["fault"]), ticket.get("in_warranty"))
        )
    outcomes = []
    for item in expected:
        found_alerts = alerts_by.get(item.terminal_id, [])
        found_tickets = tickets_by.get(item.terminal_id, [])
        outcome = Outcome(item, sorted(found_alerts), sorted(found_tickets, key=lambda t: t[0]))
        if item.alert is None:
            if item.injected:  # a fault that must raise nothing (duplicates)
                if found_tickets:
                    outcome.problems.append(f"unexpected tickets {[t[0] for t in found_tickets]}")
            elif found_alerts or found_tickets:
                outcome.problems.append(
                    f"healthy terminal has alerts {found_alerts} / tickets {len(found_tickets)}"
                )
        else:
            if item.alert not in found_alerts:
                outcome.problems.append(f"no {item.alert} alert")
            matching = [t for t in found_tickets if t[0] == item.alert]
            if item.ticket and not matching:
                outcome.problems.append(f"no {item.alert} ticket")
            if len(matching) > 1:
                outcome.problems.append(f"{len(matching)} {item.alert} tickets (one expected)")
            if not item.ticket and matching:
                outcome.problems.append(f"a ticket for {item.alert}, which opens none")
            for _fault, in_warranty in matching:
                if in_warranty is not item.in_warranty:
                    outcome.problems.append(
                        f"ticket says in_warranty={in_warranty}, expected {item.in_warranty}"
                    )
        outcomes.append(outcome)
    return DrillReport(outcomes)


def format_table(report: DrillReport) -> str:
    header = (
        "terminal",
        "protocol",
        "injected",
        "expected alert",
        "alerts found",
        "ticket",
        "warranty",
        "result",
    )
    rows = [header]
    for outcome in report.outcomes:
        item = outcome.expectation
        if item.ticket:
            tickets = [t for t in outcome.tickets if t[0] == item.alert]
            ticket = f"{len(tickets)} (expected 1)"
            warranty = ", ".join("in" if t[1] else "out" if t[1] is False else "?" for t in tickets) or "-"
            warranty += f" (expected {'in' if item.in_warranty else 'out'})"
        else:
            ticket = f"{len(outcome.tickets)} (expected 0)" if not item.alert else "none opens"
            warranty = "-"
        rows.append(
            (
                item.terminal_id,
                item.protocol,
                item.injected or "(healthy)",
                item.alert or "-",
                ", ".join(outcome.alerts) or "-",
                ticket,
                warranty,
                "ok" if outcome.ok else "FAIL: " + "; ".join(outcome.problems),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    passed = sum(1 for outcome in report.outcomes if outcome.ok)
    faults = sum(1 for outcome in report.outcomes if outcome.expectation.injected)
    healthy = len(report.outcomes) - faults
    lines.append(
        f"{passed}/{len(report.outcomes)} as expected ({faults} injected faults, {healthy} healthy terminals)"
    )
    return "\n".join(lines)
