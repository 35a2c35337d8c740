"""``gpsfleet bench fleet-import``: CSV import of terminals with SIMs and installations, rows/s.

Generates (before the clock starts) a customers file, a vehicles file and a ``units`` file
of ``--rows`` terminals, each with a SIM (valid Luhn IMEIs and ICCIDs) installed in its own
vehicle, then imports them as ``gpsfleet fleet import`` does and times each step, then
imports the units file again (every row unchanged).  Without ``--db`` it runs on a
throwaway SQLite file; each run uses fresh ids, so a ``--db`` can be reused.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.context import add_db_argument, database_or_exit, settings_from
from fleet import service
from fleet.errors import NotFound
from fleet.importer import ImportReport, import_csv, rows_to_csv
from fleet.validation import iccid_for, imei_for
from store.db import Database

MODEL = "BENCH-GT"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fleet-import",
        help="CSV import of terminals + SIMs + installations (rows/s)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    add_db_argument(parser)
    parser.add_argument("--rows", type=int, default=100_000, help="terminals to import (default 100000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def generate(rows: int, folder: Path) -> dict[str, Path]:
    """The three CSV files of a run, with ids no earlier run used."""
    run_id = secrets.token_hex(3).upper()
    tac = "35" + f"{secrets.randbelow(10**6):06d}"
    issuer = "898" + f"{secrets.randbelow(10**4):04d}"
    customers = max(1, rows // 1000)
    files = {
        "customers": rows_to_csv(
            "customers",
            (
                {"code": f"B{run_id}-{c}", "name": f"Bench customer {c}", "kind": "company"}
                for c in range(customers)
            ),
        ),
        "vehicles": rows_to_csv(
            "vehicles",
            (
                {"plate": f"B{run_id}{n:07d}", "customer_code": f"B{run_id}-{n % customers}"}
                for n in range(rows)
            ),
        ),
        "units": rows_to_csv(
            "units",
            (
                {
                    "device_id": imei_for(n, tac),
                    "model": MODEL,
                    "serial_number": f"SN{run_id}{n:07d}",
                    "firmware": "1.4.2",
                    "purchased_on": "2025-01-15",
                    "iccid": iccid_for(n, issuer),
                    "msisdn": f"14{secrets.randbelow(10**3):03d}{n:06d}",
                    "carrier": "CMCC",
                    "plan": "IoT 30MB",
                    "plate": f"B{run_id}{n:07d}",
                    "valid_from": "2025-02-01T08:00:00+00:00",
                    "installed_by": "bench",
                    "mount_location": "under dashboard",
                }
                for n in range(rows)
            ),
        ),
    }
    paths = {}
    for kind, text in files.items():
        paths[kind] = folder / f"{kind}.csv"
        paths[kind].write_text(text, encoding="utf-8")
    return paths


def _timed_import(database: Database, path: Path, kind: str) -> tuple[ImportReport, float, float]:
    """The report, the wall-clock seconds and this process's CPU seconds (the machine is shared:
    CPU time says what the import costs when other processes take the cores)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    with open(path, newline="", encoding="utf-8") as source:
        report = import_csv(database, source, kind, progress=False)
    return report, time.perf_counter() - started, time.process_time() - cpu_started


def run(args: argparse.Namespace) -> int:
    if args.rows < 1 or args.rows > 1_000_000:
        print(
            "gpsfleet bench fleet-import: --rows must be 1-1000000 (IMEI serials are 6 digits)",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="gpsfleet-bench-") as tmp:
        folder = Path(tmp)
        if not args.db:
            args.db = f"sqlite:///{folder / 'bench.db'}"  # a throwaway database unless one is named
        settings = settings_from(args)
        database = database_or_exit(settings)
        try:
            with database.engine.begin() as conn:
                try:
                    service.terminal_model_by_name(conn, MODEL)
                except NotFound:
                    service.create_terminal_model(conn, name=MODEL, protocol="gt06", warranty_months=24)
            paths = generate(args.rows, folder)
            steps: dict[str, Any] = {}
            for kind, label in (
                ("customers", "customers"),
                ("vehicles", "vehicles"),
                ("units", "units"),
                ("units", "units_again"),
            ):
                report, seconds, cpu_seconds = _timed_import(database, paths[kind], kind)
                if report.errors:
                    print(f"gpsfleet bench fleet-import: {label}: {report.errors[0]}", file=sys.stderr)
                    return 1
                steps[label] = {
                    "rows": report.rows,
                    "created": report.created,
                    "unchanged": report.unchanged,
                    "seconds": round(seconds, 3),
                    "cpu_seconds": round(cpu_seconds, 3),
                    "rows_per_s": round(report.rows / seconds) if seconds else None,
                }
        finally:
            database.dispose()
    result = {"backend": database.dialect, "rows": args.rows, "steps": steps}
    if args.json:
        print(json.dumps(result))
    else:
        for label, step in steps.items():
            print(
                f"{label:12s} {step['rows']:>8d} rows  {step['seconds']:8.2f} s  {step['rows_per_s']:>8} rows/s"
                f"  (cpu {step['cpu_seconds']:.2f} s)"
                f"  (created {step['created']}, unchanged {step['unchanged']})"
            )
        print(
            f"units import: {args.rows} terminals with SIMs and installations in {steps['units']['seconds']:.2f} s "
            f"on {database.dialect}"
        )
    return 0
