"""``gpsfleet bench store``: the bulk ingest path (PositionWriter) in rows per second.

Rows are generated before the clock starts (what the gateway hands the store): many
terminals reporting in turn, times increasing, a realistic attribute map and raw frame.
Each run uses fresh terminal ids (``bench-<run>-<n>``), so it can be repeated on the
same database; point ``--db`` at a throwaway one.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from app.context import add_db_argument, database_or_exit, settings_from
from store import ingest_postgres, ingest_sqlite
from store.db import Database
from store.ingest import PositionWriter
from store.ingest_prepare import POSITION_COLUMNS
from store.records import IngestBatch, PositionRow


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "store",
        help="bulk ingest into the store (rows/s)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    add_db_argument(parser)
    parser.add_argument("--rows", type=int, default=100_000, help="positions to write (default 100000)")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per transaction (default 10000)")
    parser.add_argument("--terminals", type=int, default=1000, help="distinct terminals (default 1000)")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also time a plain bulk load of the same rows into a table without indexes "
        "(binary COPY / executemany; no duplicate check, no state): the ceiling on this machine now",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def generate(rows: int, terminals: int, run_id: str, start: datetime) -> list[PositionRow]:
    """``rows`` positions from ``terminals`` terminals, each reporting every 10 s."""
    out: list[PositionRow] = []
    step = timedelta(seconds=10)
    for n in range(rows):
        terminal, tick = n % terminals, n // terminals
        fix_time = start + tick * step
        angle = (terminal * 37 + tick) % 360
        out.append(
            PositionRow(
                terminal_id=f"bench-{run_id}-{terminal:06d}",
                fix_time=fix_time,
                received_at=fix_time + timedelta(milliseconds=800),
                protocol="gt06",
                valid=True,
                lat=31.2 + terminal * 1e-3 + tick * 1e-5,
                lon=121.4 + terminal * 1e-3 + tick * 1e-5 * math.cos(math.radians(angle)),
                altitude_m=12.0 + (tick % 7),
                speed_kmh=float((terminal + tick) % 90),
                course=float(angle),
                satellites=7 + tick % 6,
                hdop=0.8 + (tick % 5) / 10,
                attributes={
                    "power_v": 12.4 + (tick % 5) / 10,
                    "battery_level": 100 - tick % 50,
                    "gsm_signal": 60 + tick % 40,
                    "ignition": tick % 30 != 0,
                    "odometer_m": 120_000 + tick * 90,
                    "serial": tick % 65536,
                },
                raw=b"\x78\x78\x22\x22" + n.to_bytes(8, "big") + bytes(24),
            )
        )
    return out


def run(args: argparse.Namespace) -> int:
    if args.rows < 1 or args.batch < 1 or args.terminals < 1:
        print("gpsfleet bench store: --rows, --batch and --terminals must be at least 1", file=sys.stderr)
        return 2
    settings = settings_from(args)
    database = database_or_exit(settings)
    try:
        batches = make_batches(args.rows, args.batch, args.terminals)
        figures = measure(PositionWriter(database), batches)
        figures["backend"] = database.dialect
        if args.reference:
            figures["reference_rows_per_s"] = round(args.rows / reference_seconds(database, batches))
    finally:
        gc.unfreeze()
        database.dispose()
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>20}: {value}")
    return 0


def make_batches(rows: int, batch_size: int, terminals: int) -> list[IngestBatch]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    generated = generate(rows, terminals, secrets.token_hex(4), start)
    batches = [IngestBatch(positions=generated[i : i + batch_size]) for i in range(0, rows, batch_size)]
    # All the input sits in memory at once, which a gateway never has: keep the garbage
    # collector from walking it again and again while the clock runs.
    gc.collect()
    gc.freeze()
    return batches


def measure(writer: PositionWriter, batches: list[IngestBatch]) -> dict[str, Any]:
    rows = sum(len(batch) for batch in batches)
    terminals = len({p.terminal_id for p in batches[0].positions})
    inserted = 0
    began, began_cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        inserted += writer.write(batch).inserted
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    retry_began = time.perf_counter()
    retried = writer.write(batches[-1])  # as after a lost acknowledgement
    retry_seconds = time.perf_counter() - retry_began
    return {
        "rows": rows,
        "batch": len(batches[0]),
        "batches": len(batches),
        "terminals": terminals,
        "inserted": inserted,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        # this process only (for SQLite that includes the database engine): what the
        # path costs on a core of its own, whatever else the machine is running
        "cpu_seconds": round(cpu_seconds, 3),
        "retried_batch_rows": len(batches[-1]),
        "duplicates_on_retry": retried.duplicates,
        "retry_seconds": round(retry_seconds, 3),
    }


def reference_seconds(database: Database, batches: list[IngestBatch]) -> float:
    """Seconds to load the same rows, one transaction per batch, into a scratch table
    without indexes (dropped afterwards): what the hardware allows right now."""
    table = f"bench_reference_{secrets.token_hex(4)}"
    pooled = database.engine.raw_connection()
    conn: Any = pooled.driver_connection
    try:
        if database.is_postgres:
            conn.execute(f"CREATE TABLE {table} (LIKE positions)")
            conn.commit()
            began = time.perf_counter()
            for batch in batches:
                with ingest_postgres.copy_cursor(conn) as cur:
                    rows = ingest_postgres.position_rows(batch.positions)
                    ingest_postgres.copy_rows(
                        cur, table, POSITION_COLUMNS, ingest_postgres.POSITION_TYPES, rows
                    )
                conn.commit()
        else:
            conn.execute(f"CREATE TABLE {table} AS SELECT * FROM positions WHERE 0")
            insert = f"INSERT INTO {table} ({', '.join(POSITION_COLUMNS)}) VALUES ({', '.join('?' * len(POSITION_COLUMNS))})"
            began = time.perf_counter()
            for batch in batches:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert, ingest_sqlite.position_rows(batch.positions))
                conn.commit()
        return time.perf_counter() - began
    finally:
        conn.rollback()
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        pooled.close()
