"""``gpsfleet serve``: open and migrate the database, then run the API, gateway and alerts."""

from __future__ import annotations

import argparse
import logging

from app.context import add_db_argument, database_or_exit, settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the service: API, and with role all/gateway the gateway and alert engine",
        description=(
            "Open the database (migrating it), then serve until SIGTERM/SIGINT, which drains "
            "and exits 0. An unreachable PostgreSQL is an error (exit 2), never a fallback to SQLite."
        ),
    )
    add_db_argument(parser)
    parser.add_argument("--api-host", metavar="HOST", help="address the API binds (GPSFLEET_API_HOST)")
    parser.add_argument("--api-port", metavar="N", type=int, help="API port (GPSFLEET_API_PORT)")
    parser.add_argument(
        "--role",
        choices=["all", "gateway", "api"],
        help="what this process runs: everything, the gateway and alert engine, or the API (GPSFLEET_ROLE)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from app.runtime import run

    settings = settings_from(args, api_host=args.api_host, api_port=args.api_port, role=args.role)
    if not args.verbose:
        logging.getLogger().setLevel(settings.log_level.upper())
    database = database_or_exit(settings)
    try:
        return run(settings, database, settings.role)
    finally:
        database.dispose()
