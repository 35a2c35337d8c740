"""``gpsfleet fleet``: import and export the registry as CSV (customers, vehicles, terminals...)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from app.context import add_db_argument, database_or_exit, settings_from
from fleet.importer import COLUMNS, KINDS, REQUIRED, ImportFileError, export_csv, import_csv

MAX_ERRORS_SHOWN = 200


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fleet", help="import and export the fleet registry as CSV")
    actions = parser.add_subparsers(dest="fleet_action", metavar="ACTION", required=True)

    importing = actions.add_parser(
        "import",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="import a CSV file (upsert by natural key; re-importing changes nothing)",
        description=(
            "Import a CSV file with a header row. Rows are matched by their natural key\n"
            "(customer code, licence number, plate, device id, ICCID, terminal + valid_from)\n"
            "and created, updated or left unchanged. A bad row is reported with its row\n"
            "number (the header is row 1) and field, and skipped; the others still import.\n"
            "Exit 1 when any row failed. The kind 'units' takes a terminal, its SIM and its\n"
            "installation in one row."
        ),
        epilog=_columns_help(),
    )
    importing.add_argument("file", metavar="FILE", help="the CSV file ('-' reads standard input)")
    importing.add_argument("--kind", required=True, choices=KINDS, help="what the rows are")
    importing.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    importing.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    importing.add_argument("--json", action="store_true", help="print the report as JSON")
    add_db_argument(importing)
    importing.set_defaults(handler=handle_import)

    exporting = actions.add_parser("export", help="export records as CSV in the import format")
    exporting.add_argument("--kind", required=True, choices=KINDS, help="what to export")
    exporting.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    add_db_argument(exporting)
    exporting.set_defaults(handler=handle_export)


def _columns_help() -> str:
    lines = ["columns per kind (* required; times ISO 8601, UTC when no zone is given):"]
    for kind, columns in COLUMNS.items():
        lines.append(f"  {kind}: " + ", ".join(c + ("*" if c in REQUIRED[kind] else "") for c in columns))
    return "\n".join(lines)


def handle_import(args: argparse.Namespace) -> int:
    database = database_or_exit(settings_from(args))
    try:
        try:
            if args.file == "-":
                report = import_csv(
                    database, sys.stdin, args.kind, dry_run=args.dry_run, progress=args.progress
                )
            else:
                with open(args.file, newline="", encoding="utf-8-sig") as source:
                    report = import_csv(
                        database, source, args.kind, dry_run=args.dry_run, progress=args.progress
                    )
        except (ImportFileError, OSError, UnicodeDecodeError) as exc:
            print(f"gpsfleet: cannot import {args.file}: {exc}", file=sys.stderr)
            return 2
    finally:
        database.dispose()
    if args.json:
        print(json.dumps({**asdict(report), "failed": report.failed}, indent=2))
    else:
        for error in report.errors[:MAX_ERRORS_SHOWN]:
            print(f"row {error.row}: {error.field}: {error.message}", file=sys.stderr)
        if len(report.errors) > MAX_ERRORS_SHOWN:
            print(f"... and {len(report.errors) - MAX_ERRORS_SHOWN} more errors", file=sys.stderr)
        print(report.summary())
    return 1 if report.errors else 0


def handle_export(args: argparse.Namespace) -> int:
    database = database_or_exit(settings_from(args))
    try:
        if args.out:
            with open(args.out, "w", newline="", encoding="utf-8") as out:
                count = export_csv(database, args.kind, out)
        else:
            try:
                count = export_csv(database, args.kind, sys.stdout)
            except BrokenPipeError:
                return _reader_went_away()
    finally:
        database.dispose()
    print(f"exported {count} {args.kind}", file=sys.stderr)
    return 0


def _reader_went_away() -> int:
    """``gpsfleet fleet export … | head``: the reader stopped early, which is no error to
    report with a traceback; standard output goes to /dev/null so the exit flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 1
