"""``gpsfleet report tickets``: the monthly or quarterly ticket report (rules 12 and 13),
as a table for a reader or JSON (the API's ``/api/v1/reports/tickets``) for a mail job."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from alerts import reports
from app.context import add_db_argument, database_or_exit, settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="monthly and quarterly reports")
    kinds = parser.add_subparsers(dest="report_kind", metavar="REPORT", required=True)
    tickets = kinds.add_parser(
        "tickets",
        help="repair tickets of a month or a quarter: volumes, SLA met, repair hours, faults per model",
        description=__doc__,
    )
    tickets.add_argument("--period", help="a month (2026-11) or a quarter (2026-Q4); default: last month")
    tickets.add_argument("--tz", default="UTC", help="the zone of the period's bounds, e.g. Asia/Shanghai")
    tickets.add_argument("--json", action="store_true", help="print the report as JSON")
    add_db_argument(tickets)
    tickets.set_defaults(handler=handle_tickets)


def handle_tickets(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        period = (
            reports.parse_period(args.period, args.tz) if args.period else reports.last_month(now, args.tz)
        )
    except ValueError as exc:
        print(f"gpsfleet report tickets: {exc}", file=sys.stderr)
        return 2
    database = database_or_exit(settings_from(args))
    try:
        with database.engine.connect() as conn:
            report = reports.ticket_report(conn, period, now)
    finally:
        database.dispose()
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    period, counts, sla, hours = report["period"], report["tickets"], report["sla"], report["hours"]
    lines = [
        f"Repair tickets {period['label']} ({period['start']} to {period['end']})",
        "",
        f"opened            {counts['opened']}  ({_pairs(counts['by_source'])})",
        f"  by priority     {_pairs(counts['by_priority'])}",
        f"  by fault        {_pairs(counts['by_fault'])}",
        f"  reopened        {counts['reopened']}",
        f"  cancelled       {counts['cancelled']}",
        f"resolved          {counts['resolved_in_period']} in the period",
        f"closed            {counts['closed_in_period']} in the period",
        f"open at the end   {counts['open_at_end']}",
        "",
    ]
    for name in ("response", "repair"):
        figures, spread = sla[name], hours[name]
        percent = "—" if figures["met_percent"] is None else f"{figures['met_percent']}%"
        lines.append(
            f"{name:<8} SLA met {percent} (met {figures['met']}, missed {figures['missed']}, "
            f"pending {figures['pending']}); hours median {_h(spread['median'])}, p90 {_h(spread['p90'])}, "
            f"mean {_h(spread['mean'])} of {spread['count']}"
        )
    lines += ["", "model             tickets  terminals  per 100  faults"]
    for model in report["by_model"]:
        per_100 = "—" if model["tickets_per_100_terminals"] is None else model["tickets_per_100_terminals"]
        terminals = "—" if model["terminals"] is None else model["terminals"]
        lines.append(
            f"{model['model']:<17} {model['tickets']:>7}  {terminals!s:>9}  {per_100!s:>7}  {_pairs(model['faults'])}"
        )
    warranty = report["warranty"]
    lines += [
        "",
        f"warranty          in {warranty['in']}, out {warranty['out']}, unknown {warranty['unknown']}",
    ]
    return "\n".join(lines)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "—"


def _h(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"
