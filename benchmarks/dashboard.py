"""``gpsfleet bench dashboard``: what one poll of the NOC dashboard costs with thousands of
terminals.

Builds a registry of ``--terminals`` installed terminals (a tenth of them with a power cut)
through the real services, stores one position each and lets the alert engine derive health
and alerts, then serves the API (uvicorn) on a free port and times, over HTTP with a NOC
token, the calls the terminals view makes every 5 s: the health counts (``/api/v1/health``)
and one page of the terminal table (``/api/v1/dashboard/terminals``) sorted, filtered and
searched as an operator would.  Prints the median and the 95th percentile of each.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from core.settings import Settings
from fleet import service
from fleet.validation import imei_for
from store.db import Database, open_database
from store.ingest import PositionWriter
from store.records import IngestBatch, PositionRow

QUERIES = {
    "health counts": "/api/v1/health",
    "table, first page": "/api/v1/dashboard/terminals?limit=100",
    "table, by last seen": "/api/v1/dashboard/terminals?sort=last_seen&order=desc&limit=100",
    "table, faulty only": "/api/v1/dashboard/terminals?show=faulty&limit=100",
    "table, search": "/api/v1/dashboard/terminals?q=P0012&limit=100",
    "table, by faults, page 11": "/api/v1/dashboard/terminals?sort=faults&order=desc&offset=1000&limit=100",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="one dashboard poll (health counts, terminal table) with thousands of terminals",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument(
        "--terminals", type=int, default=5000, help="terminals in the registry (default 5000)"
    )
    parser.add_argument("--repeat", type=int, default=20, help="calls of each query (default 20)")
    parser.set_defaults(handler=run)


def seed(database: Database, settings: Settings, terminals: int) -> None:
    from alerts.engine import AlertEngine

    with database.engine.begin() as conn:
        service.create_terminal_model(conn, name="BENCH-1", protocol="gt06", warranty_months=12)
        customer = service.create_customer(conn, name="Bench Logistics")
        for number in range(terminals):
            plate = f"P{number:06d}"
            service.create_vehicle(conn, plate=plate, customer_id=customer["id"], vin=None)
            service.create_terminal(conn, device_id=imei_for(number), model="BENCH-1")
            service.install(conn, device_id=imei_for(number), plate=plate)
    now = datetime.now(UTC)
    batch = IngestBatch()
    batch.positions.extend(
        PositionRow(
            terminal_id=imei_for(number),
            fix_time=now,
            received_at=now,
            protocol="gt06",
            valid=True,
            lat=31.0 + number * 1e-4,
            lon=121.0,
            alarms=["power_cut"] if number % 10 == 0 else [],
            attributes={"power_v": 0.0 if number % 10 == 0 else 12.4, "gsm_signal": 20},
            raw=b"",
        )
        for number in range(terminals)
    )
    PositionWriter(database).write(batch)
    AlertEngine(settings, database).process([("batch", batch)])


def run(args: argparse.Namespace) -> int:
    # imported here: every gpsfleet command registers this benchmark, few run it
    import httpx
    import uvicorn

    from api.app import create_app
    from api.auth import create_token

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    folder = Path(tempfile.mkdtemp(prefix="gpsfleet-bench-dashboard-"))
    url = f"sqlite:///{folder / 'gpsfleet.db'}"
    database = open_database(url)
    settings = Settings(db=url)
    started = time.perf_counter()
    seed(database, settings, args.terminals)
    print(f"seeded {args.terminals} terminals in {time.perf_counter() - started:.1f} s (SQLite)")
    token = create_token(database.engine, role="noc", name="bench").token
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, database), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
        ) as client:
            print(f"{'query':28} {'median ms':>10} {'p95 ms':>8} {'bytes':>8}")
            for name, path in QUERIES.items():
                timings, size = [], 0
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    answer = client.get(path)
                    timings.append((time.perf_counter() - began) * 1000)
                    answer.raise_for_status()
                    size = len(answer.content)
                timings.sort()
                p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
                print(f"{name:28} {statistics.median(timings):10.1f} {p95:8.1f} {size:8d}")
    finally:
        server.should_exit = True
        thread.join(30)
        database.dispose()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    main_parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard")
    register(main_parser.add_subparsers(required=True))
    parsed = main_parser.parse_args(["dashboard", *sys.argv[1:]])
    raise SystemExit(parsed.handler(parsed))
